"""export_inference + load on a small pure function: symbolic batch, weights, label map,
one artifact for the CPU and one for the accelerators."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax import export
from data_pipelines.errors import UserError


def logits_of(variables, inputs):
  # A stand-in with the model's inputs and variable collections.
  h = jnp.mean(inputs['fast'], axis=(1, 2, 3)) @ variables['params']['head']['kernel']
  h = h + jnp.mean(inputs['audio'], axis=(1, 2, 3))[:, None]
  return (h - variables['batch_stats']['bn']['mean']) * variables['params']['bn']['scale']


def make_predict(traced_with):
  def factory(conv_impl):
    traced_with.append(conv_impl)
    return lambda v, x: {'logits': logits_of(v, x),
                         'scores': jax.nn.softmax(logits_of(v, x), axis=-1)}
  return factory


def test_export_load_roundtrip_with_any_batch(tmp_path):
  rng = np.random.default_rng(0)
  variables = {'params': {'head': {'kernel': rng.normal(size=(3, 4)).astype(np.float32)},
                          'bn': {'scale': rng.normal(size=(4,)).astype(np.float32)}},
               'batch_stats': {'bn': {'mean': rng.normal(size=(4,)).astype(np.float32)}}}
  specs = {'fast': (4, 8, 8, 3), 'audio': (16, 10, 1)}
  traced_with = []
  out = export.export_inference(make_predict(traced_with), variables, specs,
                                str(tmp_path / 'exp'), task='classification',
                                class_names=['a', 'b', 'c', 'd'], config_json='{"x": 1}')
  model = export.load(out)
  assert model.label_map == ['a', 'b', 'c', 'd'] and model.task == 'classification'
  assert model.input_names == ('fast', 'audio')
  # Lowered here for every platform: the CPU artifact with the CPU forms, the
  # accelerators' with the native implementation.
  assert traced_with == ['cpu', 'native']
  assert model.signature['artifacts'] == {
      'cpu': 'inference_cpu.jaxexport', 'cuda': 'inference_accelerators.jaxexport',
      'rocm': 'inference_accelerators.jaxexport', 'tpu': 'inference_accelerators.jaxexport'}
  accelerators = jax.export.deserialize(
      bytearray((tmp_path / 'exp' / 'inference_accelerators.jaxexport').read_bytes()))
  assert accelerators.platforms == ('cuda', 'rocm', 'tpu')
  with pytest.raises(UserError, match="no inference artifact for platform 'metal'"):
    export.load(out, platform='metal')
  assert json.load(open(tmp_path / 'exp' / 'config.json')) == {'x': 1}
  for batch in (1, 3):
    inputs = {k: rng.normal(size=(batch, *s)).astype(np.float32) for k, s in specs.items()}
    np.testing.assert_allclose(model(inputs), logits_of(variables, inputs), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(model.scores(inputs).sum(-1), 1.0, rtol=1e-5)
  with pytest.raises(KeyError, match='audio'):
    model({'fast': np.zeros((1, *specs['fast']), np.float32)})
  weights = np.load(tmp_path / 'exp' / 'weights.npz')
  assert sorted(weights.files) == ['batch_stats/bn/mean', 'params/bn/scale', 'params/head/kernel']


def test_load_rejects_non_export_dir(tmp_path):
  with pytest.raises(UserError, match='not an export directory'):
    export.load(str(tmp_path))
  with pytest.raises(UserError, match='no such export directory'):
    export.load(str(tmp_path / 'nope'))


@pytest.mark.parametrize('name, damage', [
    ('weights.npz', 'missing'), ('weights.npz', 'truncated'), ('label_map.json', 'missing'),
    ('signature.json', 'truncated'), ('inference_cpu.jaxexport', 'truncated')])
def test_load_names_the_missing_or_broken_file(tmp_path, name, damage):
  variables = {'params': {'head': {'kernel': np.ones((3, 4), np.float32)},
                          'bn': {'scale': np.ones((4,), np.float32)}},
               'batch_stats': {'bn': {'mean': np.zeros((4,), np.float32)}}}
  out = export.export_inference(make_predict([]), variables,
                                {'fast': (4, 8, 8, 3), 'audio': (16, 10, 1)},
                                str(tmp_path / 'exp'), task='classification',
                                class_names=['a', 'b', 'c', 'd'], config_json='{}')
  path = tmp_path / 'exp' / name
  if damage == 'missing':
    path.unlink()
  else:
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
  with pytest.raises(UserError, match=f'{name}: {damage if damage == "missing" else "damaged"}'):
    export.load(out, platform='cpu')
