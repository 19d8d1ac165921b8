"""The PyTorch side of the device check: its minimal network is a fair stand-in.

``benchmarks/torch_slowfast.py`` rebuilds this project's network in plain
``torch.nn`` for accelerator images without pytorchvideo. These tests check on
meta tensors (nothing computed) that it has the parameters and FLOPs of
PyTorchVideo's builders under PyTorchVideo's settings and those of our jax
network under ours, at the benchmark's full R50 sizes; and that the timing
script runs a step at tiny sizes.
"""

import json
import os
import sys

import pytest

torch = pytest.importorskip('torch')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

import torch_slowfast  # noqa: E402
import torch_train_step  # noqa: E402


def _spec(variant, image_size=224):
  return torch_train_step.spec_of_variant(variant, image_size)


def _params(model):
  return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('variant', ['avslowfast_4x16_r50', 'slowfast_4x16_r50',
                                     'avslowfast_8x8_r50'])
def test_minimal_network_is_pytorchvideos(variant):
  """Under PyTorchVideo's settings: the same parameters, the same forward FLOPs."""
  pytest.importorskip('pytorchvideo')
  spec = torch_slowfast.pytorchvideo_settings(_spec(variant))
  ours = torch_slowfast.build(spec, 'minimal', 'meta')
  theirs = torch_slowfast.build(spec, 'pytorchvideo', 'meta')
  assert _params(ours) == _params(theirs)
  flops = torch_slowfast.forward_flops(ours, spec, 'minimal')
  their_flops = torch_slowfast.forward_flops(theirs, spec, 'pytorchvideo')
  assert flops == their_flops
  # 4x16 R50 at 224^2: about 29 (SlowFast) to 31 (AVSlowFast) GMACs a clip.
  assert 40e9 < flops < 150e9


@pytest.mark.parametrize('variant', ['avslowfast_4x16_r50', 'slowfast_4x16_r50'])
def test_minimal_network_is_ours(variant):
  """Under this project's settings (the device check's jax step): the parameters of our
  network less the AVS projections (unused with the AVS losses off), the same FLOPs."""
  import jax
  from avslowfast_jax import model_builder
  from avslowfast_jax.tools.model_stats import model_stats
  from configs import kinetics
  config = kinetics.get_config(variant)
  config.data.train_crop_size = 224
  spec = torch_train_step.spec_from_config(config)
  model = torch_slowfast.build(spec, 'minimal', 'meta')
  net, _ = model_builder.build(config)
  specs = model_builder.input_specs(config, 1)
  variables = jax.eval_shape(lambda: net.init(
      {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)},
      {k: jax.numpy.zeros(s.shape, s.dtype) for k, s in specs.items()}, train=False))
  leaves = jax.tree_util.tree_flatten_with_path(variables['params'])[0]
  ours = sum(int(v.size) for path, v in leaves
             if not any(str(getattr(k, 'key', '')).startswith('avs_') for k in path))
  assert _params(model) == ours
  torch_flops = torch_slowfast.forward_flops(model, spec, 'minimal')
  jax_macs = model_stats(config, image_size=224)['gflops'] * 1e9
  # Our count includes the (unused) AVS projections: a few hundred thousand MACs.
  assert torch_flops / 2 == pytest.approx(jax_macs, rel=1e-4)  # model_stats rounds to 1e-3 G


def test_train_step_script_at_tiny_size(capsys):
  """One bf16-autocast step of the tiny AVSlowFast on CPU: the JSON fields the check reads."""
  spec = _spec('tiny_avslowfast_8x8_r50', 32)
  torch_train_step.main(['--spec', json.dumps(spec), '--batches', '2', '--steps', '1',
                         '--warmup', '1', '--device', 'cpu'])
  (row,) = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith('{')]
  assert row['error'] is None, row
  assert row['builder'] == 'minimal' and row['autocast'] and row['channels_last_3d']
  assert row['per_device_batch'] == 2 and row['step_seconds'] > 0
  assert row['clips_per_sec'] == pytest.approx(2 / row['step_seconds'])
  assert row['model_tflops_per_step'] > 0 and row['params'] > 0 and row['mfu'] is None
  assert row['loss'] == row['loss']  # not NaN


def test_sweep_stops_at_the_first_out_of_memory(monkeypatch):
  calls = []

  def run_batch(spec, builder, batch, *args, **kw):
    calls.append(batch)
    if batch >= 4:
      raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')
    return {'per_device_batch': batch, 'error': None}

  monkeypatch.setattr(torch_train_step, 'run_batch', run_batch)
  rows = torch_train_step.sweep({}, 'minimal', [2, 4, 8], 'bfloat16', 1, 1, 'cpu', 1e9)
  assert calls == [2, 4]
  assert [r['per_device_batch'] for r in rows] == [2, 4]
  assert rows[0]['error'] is None and rows[1]['out_of_memory']
