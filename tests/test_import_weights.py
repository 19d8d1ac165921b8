"""The PySlowFast / PyTorchVideo weight importer reproduces the PyTorch logits.

Needs the ``[import]`` extra (torch, pytorchvideo); skipped cleanly without it.
The reference networks come from PyTorchVideo's ``create_slowfast`` with every
weight random and non-trivial BatchNorm statistics; our model, filled by the
importer, must give the same eval-mode logits (max abs difference < 1e-4, fp32).
"""

import copy
import os
import re

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from configs import kinetics  # noqa: E402
from avslowfast_jax import trees  # noqa: E402
from avslowfast_jax.tools import import_weights as iw  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64  # frame size: small keeps the two R50 forwards cheap on 2 CPU cores
TOL = 1e-4


def _create_slowfast():
  pytest.importorskip('pytorchvideo')
  with iw.torchvision_stand_in():
    from pytorchvideo.models.slowfast import create_slowfast
  return create_slowfast


def _config(variant, fusion_kernel):
  c = kinetics.get_config(variant)
  c.model.fusion_kernel_size = fusion_kernel
  return c


def _randomise(net, slow_len, fast_len, size, seed, audio_shape=None):
  """Random BN affine params (the zero-initialised last BNs included) and
  running statistics near the real activation statistics, so that activations
  stay O(1) through the network while every statistic matters. ``audio_shape``
  ``(T, F)``: the net also takes audio ``[N, 1, T, 1, F]`` (AVSlowFast)."""
  g = torch.Generator().manual_seed(seed)
  bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.Conv3d):  # He-normal, fan-in
        m.weight.normal_(0, 1, generator=g).mul_((2.0 / m.weight[0].numel()) ** 0.5)
      elif isinstance(m, torch.nn.Linear):  # PySlowFast's classifier init (std 0.01)
        m.weight.normal_(0, 0.01, generator=g)
        m.bias.normal_(0, 0.1, generator=g)
    for m in bns:
      m.weight.uniform_(0.5, 1.5, generator=g)
      m.bias.normal_(0, 0.2, generator=g)
      m.momentum = 1.0  # the next train-mode pass sets running stats to batch stats
    net.train()
    inputs = [torch.randn(4, 3, slow_len, size, size, generator=g),
              torch.randn(4, 3, fast_len, size, size, generator=g)]
    if audio_shape:
      inputs.append(torch.randn(4, 1, audio_shape[0], 1, audio_shape[1], generator=g))
    net(inputs)
    for m in bns:
      m.running_mean.add_(0.2 * m.running_var.sqrt() * torch.randn(m.running_mean.shape,
                                                                   generator=g))
      m.running_var.mul_(torch.empty(m.running_var.shape).uniform_(0.6, 1.6, generator=g))
  net.eval()
  assert all(float(m.weight.detach().abs().min()) > 0 for m in bns)


class Reference:
  """A randomised PyTorchVideo SlowFast, its inputs and eval logits, plus our
  (jitted) model for the same config."""

  def __init__(self, variant, depth_blocks=None, stem=(64, 8), seed=0):
    import jax
    from avslowfast_jax import model_builder

    c0 = kinetics.get_config(variant)
    alpha, fast_len = c0.model.alpha_f, c0.data.num_frames
    slow_len = fast_len // alpha
    # PySlowFast's 4x16 R50 uses a 5x1x1 Fast->Slow kernel, its 8x8 R50 (and
    # PyTorchVideo's slowfast_r50, create_slowfast's default) a 7x1x1 one.
    self.fusion_kernel = 5 if alpha == 8 else 7
    self.config = _config(variant, self.fusion_kernel)
    final = SIZE // 32
    kwargs = {}
    if depth_blocks is not None:
      kwargs['model_depth'] = depth_blocks
    self.net = _create_slowfast()(
        slowfast_fusion_conv_kernel_size=(self.fusion_kernel, 1, 1),
        slowfast_fusion_conv_stride=(alpha, 1, 1), stem_dim_outs=stem,
        head_pool_kernel_sizes=((slow_len, final, final), (fast_len, final, final)), **kwargs)
    _randomise(self.net, slow_len, fast_len, SIZE, seed)
    g = torch.Generator().manual_seed(seed + 1)
    slow = torch.randn(2, 3, slow_len, SIZE, SIZE, generator=g)
    fast = torch.randn(2, 3, fast_len, SIZE, SIZE, generator=g)
    with torch.no_grad():
      self.logits = self.net([slow, fast]).numpy()
      # The same network in fp64: how far fp32 rounding alone moves the logits.
      net64 = copy.deepcopy(self.net).double()
      self.logits64 = net64([slow.double(), fast.double()]).numpy()
    self.inputs = {'slow': slow.permute(0, 2, 3, 4, 1).numpy(),
                   'fast': fast.permute(0, 2, 3, 4, 1).numpy()}
    self.state = {k: v.clone() for k, v in self.net.state_dict().items()}
    model, _ = model_builder.build(self.config)
    self.apply = jax.jit(lambda v, x: model.apply(v, x, train=False)[0])

  def ours(self, variables):
    return np.asarray(self.apply(variables, self.inputs))


@pytest.fixture(scope='module')
def r50_4x16():
  return Reference('slowfast_4x16_r50')


@pytest.fixture(scope='module')
def r50_8x8():
  return Reference('slowfast_8x8_r50')


@pytest.fixture(scope='module')
def tiny():
  # Our tiny variant (width 8, one block per stage) is PyTorchVideo's depth-18
  # stage layout (1, 1, 1, 1) with bottleneck blocks and stems (8, 1).
  return Reference('tiny_slowfast_8x8_r50', depth_blocks=18, stem=(8, 1), seed=3)


def _to_pyslowfast(state):
  """Renames a PyTorchVideo SlowFast state dict to PySlowFast's names.

  Written from PySlowFast's ``video_model_builder.py`` / ``resnet_helper.py`` /
  ``stem_helper.py`` / ``head_helper.py`` (module attribute names), independent
  of the importer's own tables: both codebases describe the same network.
  """
  rules = [
      (r'blocks\.0\.multipathway_blocks\.(\d)\.conv\.', r's1.pathway\1_stem.conv.'),
      (r'blocks\.0\.multipathway_blocks\.(\d)\.norm\.', r's1.pathway\1_stem.bn.'),
      (r'blocks\.(\d)\.multipathway_fusion\.conv_fast_to_slow\.',
       lambda m: f's{int(m[1]) + 1}_fuse.conv_f2s.'),
      (r'blocks\.(\d)\.multipathway_fusion\.norm\.', lambda m: f's{int(m[1]) + 1}_fuse.bn.'),
      (r'blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch1_conv\.',
       lambda m: f's{int(m[1]) + 1}.pathway{m[2]}_res{m[3]}.branch1.'),
      (r'blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch1_norm\.',
       lambda m: f's{int(m[1]) + 1}.pathway{m[2]}_res{m[3]}.branch1_bn.'),
      (r'blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.conv_(\w)\.',
       lambda m: f's{int(m[1]) + 1}.pathway{m[2]}_res{m[3]}.branch2.{m[4]}.'),
      (r'blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.norm_(\w)\.',
       lambda m: f's{int(m[1]) + 1}.pathway{m[2]}_res{m[3]}.branch2.{m[4]}_bn.'),
      (r'blocks\.\d+\.proj\.', 'head.projection.'),
  ]
  out = {}
  for key, value in state.items():
    for pattern, repl in rules:
      new, n = re.subn('^' + pattern, repl, key)
      if n:
        out[new] = value
        break
    else:
      raise AssertionError(f'no PySlowFast name for {key}')
  return out


def _import(ref, state, source='pytorchvideo', config=None, **kw):
  return iw.import_checkpoint(state, source, config or ref.config, **kw)


# ---------------------------------------------------------------- equivalence

@pytest.mark.parametrize('name', ['r50_4x16', 'r50_8x8'])
def test_pytorchvideo_logits_match(name, request):
  ref = request.getfixturevalue(name)
  result = _import(ref, ref.state)
  assert not result.initialised  # SlowFast whole: nothing newly initialised
  assert len(result.imported) == sum(1 for k in ref.state if 'num_batches' not in k)
  assert np.abs(ref.logits).max() > 0.5  # not a degenerate (all ~0) output
  ours = ref.ours(result.variables)
  diff = np.abs(ours - ref.logits).max()
  diff64 = np.abs(ours - ref.logits64).max()
  print(f'\n{name}: max |logit| {np.abs(ref.logits).max():.3g}; max abs difference vs '
        f'PyTorch fp32 {diff:.3g}, vs PyTorch fp64 {diff64:.3g} (PyTorch fp32 vs fp64: '
        f'{np.abs(ref.logits - ref.logits64).max():.3g})')
  assert diff < TOL
  assert diff64 < TOL


def test_pyslowfast_naming_logits_match(r50_8x8):
  ref = r50_8x8
  renamed = _to_pyslowfast(ref.state)
  assert 's1_fuse.conv_f2s.weight' in renamed
  assert 's4.pathway0_res5.branch2.c_bn.running_var' in renamed
  assert 'head.projection.weight' in renamed
  ours = _import(ref, renamed, source='pyslowfast')
  theirs = _import(ref, ref.state)
  assert ours.imported.keys() == theirs.imported.keys()
  diff = np.abs(ref.ours(ours.variables) - ref.logits).max()
  assert diff < TOL
  # Names of one scheme are rejected under the other, with a hint.
  with pytest.raises(iw.WeightImportError, match='look like --source pytorchvideo'):
    _import(ref, ref.state, source='pyslowfast')


def test_layout_conversion():
  w = np.arange(2 * 3 * 5 * 7 * 7, dtype=np.float32).reshape(2, 3, 5, 7, 7)
  k = iw.convert_tensor('conv', w, 'w')
  assert k.shape == (5, 7, 7, 3, 2)
  assert k[4, 1, 6, 2, 1] == w[1, 2, 4, 1, 6]
  d = np.arange(6, dtype=np.float32).reshape(2, 3)
  assert iw.convert_tensor('dense', d, 'd').shape == (3, 2)
  assert iw.convert_tensor('dense', d, 'd')[2, 1] == d[1, 2]


# ----------------------------------------------------------------- the file

def test_cli_roundtrip_from_pyth(tiny, tmp_path, capsys):
  ref = tiny
  path = tmp_path / 'SLOWFAST_tiny.pyth'
  cfg = 'RESNET:\n  DEPTH: 50\nSLOWFAST:\n  ALPHA: 4\n  FUSION_KERNEL_SZ: 7\n'
  torch.save({'epoch': 196, 'model_state': _to_pyslowfast(ref.state), 'cfg': cfg,
              'optimizer_state': {'state': {}, 'param_groups': [{'lr': 0.1}]}}, path)
  out = tmp_path / 'out'
  rc = iw.main(['import_weights', '--source=pyslowfast', f'--checkpoint={path}',
                f'--config={REPO}/configs/kinetics.py:tiny_slowfast_8x8_r50',
                f'--output={out}', '--config.model.fusion_kernel_size=7'])
  assert rc == 0, capsys.readouterr().err
  assert 'newly initialised 0 arrays' in capsys.readouterr().out
  report = __import__('json').load(open(out / 'import_report.json'))
  assert report['counts']['initialised_arrays'] == 0
  assert report['imported']['params/slow_stem/conv/kernel'] == 's1.pathway0_stem.conv.weight'
  assert report['warnings'] == []
  assert all('num_batches_tracked' in k for k in report['skipped'])
  restored = iw.load_output(str(out))
  assert set(restored) == {'params', 'batch_stats'}
  diff = np.abs(ref.ours(restored) - ref.logits).max()
  assert diff < TOL
  # A second run refuses to overwrite without --overwrite.
  with pytest.raises(iw.WeightImportError, match='--overwrite'):
    iw.main(['import_weights', '--source=pyslowfast', f'--checkpoint={path}',
             f'--config={REPO}/configs/kinetics.py:tiny_slowfast_8x8_r50',
             f'--output={out}', '--config.model.fusion_kernel_size=7'])


def test_weights_only_refuses_arbitrary_pickles(tmp_path):
  path = tmp_path / 'evil.pyth'
  torch.save({'model_state': {'w': torch.zeros(1)}, 'extra': _Arbitrary()}, path)
  with pytest.raises(iw.WeightImportError, match='evil.pyth: not a checkpoint this tool can read '
                     r'\(it holds Python objects other than tensors'):
    iw.load_torch_state_dict(str(path))


class _Arbitrary:
  pass


def test_state_dict_containers(tiny):
  plain, extras = iw.unwrap_state_dict({'module.' + k: v for k, v in tiny.state.items()})
  assert set(plain) == set(tiny.state) and extras == {}
  wrapped, extras = iw.unwrap_state_dict({'model_state': tiny.state, 'epoch': 3})
  assert set(wrapped) == set(tiny.state) and extras == {'epoch': 3}


# ------------------------------------------------------------------- errors

def test_shape_mismatch_names_the_key(tiny):
  state = dict(tiny.state)
  key = 'blocks.2.multipathway_blocks.0.res_blocks.0.branch2.conv_b.weight'
  state[key] = torch.zeros(tuple(state[key].shape[:-1]) + (5,))
  with pytest.raises(iw.WeightImportError, match=re.escape(key)) as e:
    _import(tiny, state)
  assert 'slow_res3_block0/conv_b/kernel' in str(e.value)


def test_fusion_kernel_mismatch_says_what_to_set(tiny):
  config = _config('tiny_slowfast_8x8_r50', 5)  # checkpoint has 7x1x1 laterals
  with pytest.raises(iw.WeightImportError, match='fusion_kernel_size=7') as e:
    _import(tiny, tiny.state, config=config)
  assert 'blocks.0.multipathway_fusion.conv_fast_to_slow.weight' in str(e.value)


def test_unexpected_key_is_an_error(tiny):
  state = dict(tiny.state, **{'blocks.5.extra.weight': torch.zeros(3)})
  with pytest.raises(iw.WeightImportError, match=r"unexpected key.*\n  blocks\.5\.extra\.weight"):
    _import(tiny, state)


def test_lateral_placement_mismatch_is_an_error(tiny):
  config = _config('tiny_slowfast_8x8_r50', 7)
  config.model.fast_to_slow_stages = ('res3', 'res4')  # the audio-visual code's placement
  with pytest.raises(iw.WeightImportError, match="add 'pool1' to model.fast_to_slow_stages"):
    _import(tiny, tiny.state, config=config)


def test_missing_visual_key_is_an_error(tiny):
  state = dict(tiny.state)
  del state['blocks.4.multipathway_blocks.1.res_blocks.0.branch2.norm_c.running_var']
  with pytest.raises(iw.WeightImportError, match='batch_stats/fast_res5_block0/bn_c/var'):
    _import(tiny, state)


# ------------------------------------------------------ partial imports

def test_avslowfast_gets_visual_weights_and_new_audio_and_head(tiny):
  config = _config('tiny_avslowfast_8x8_r50', 7)
  result = _import(tiny, tiny.state, config=config)
  n_source = sum(1 for k in tiny.state if 'num_batches' not in k)
  # Everything but the classifier (wider here: it also takes the audio features).
  assert len(result.imported) == n_source - 2
  assert not any(p.startswith('params/head') for p in result.imported)
  initialised = {p.split('/')[1] for p in result.initialised}
  assert {'audio', 'head'} <= initialised
  assert not initialised & {'slow_stem', 'fast_stem', 'fast_to_slow_pool1'}
  assert sum('classifier not imported' in r for _, r in result.skipped) == 2
  kernel = tiny.state['blocks.1.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight']
  np.testing.assert_array_equal(
      result.variables['params']['slow_res2_block0']['conv_a']['kernel'],
      kernel.numpy().transpose(2, 3, 4, 1, 0))


def test_new_class_count_reinitialises_head(tiny):
  config = _config('tiny_slowfast_8x8_r50', 7)
  config.model.num_classes = 97
  result = _import(tiny, tiny.state, config=config)
  assert sorted(result.initialised) == ['params/head/classifier/bias',
                                        'params/head/classifier/kernel']
  assert result.variables['params']['head']['classifier']['kernel'].shape[-1] == 97


def test_pyslowfast_cfg_alpha_mismatch_warns(tiny):
  config = _config('tiny_slowfast_8x8_r50', 7)
  result = _import(tiny, tiny.state, config=config,
                   extras={'cfg': 'SLOWFAST:\n  ALPHA: 8\n  BETA_INV: 8\n'})
  assert any('ALPHA=8' in w and 'alpha_f=4' in w for w in result.warnings)


def test_pyslowfast_nonlocal_names_map_onto_r101_nl():
  # PySlowFast's R101+NL puts Non-local blocks after res4 blocks 6, 13, 20
  # (``s4.pathway0_nonlocal6`` ...): our nonlocal_every=7.
  config = _config('slowfast_8x8_r101_nl', 5)
  config.model.nonlocal_every = 7
  state = {
      's4.pathway0_nonlocal13.conv_theta.weight': torch.ones(512, 1024, 1, 1, 1),
      's4.pathway0_nonlocal13.conv_theta.bias': torch.ones(512),
      's4.pathway0_nonlocal13.conv_out.weight': torch.ones(1024, 512, 1, 1, 1),
      's4.pathway0_nonlocal13.bn.running_var': torch.ones(1024),
  }
  tensors, _ = iw.parse_state_dict(state, 'pyslowfast')
  abstract = iw.model_variables(config)
  flat = {p: v.shape for p, v in trees.flatten(dict(abstract)).items()}
  for t in tensors:
    path = iw.variable_path(t)
    assert flat[path] == t.array.shape, path
  assert {'/'.join(iw.flax_path(t.layer)) for t in tensors} == {
      'slow_res4_nonlocal13/theta', 'slow_res4_nonlocal13/out', 'slow_res4_nonlocal13/bn'}


# ------------------------------------------------- PyTorchVideo AVSlowFast

def test_pytorchvideo_avslowfast_logits_match(capsys):
  """``create_audio_visual_slowfast`` at test size (our tiny widths, one block per
  stage) against our model under its compatibility settings: audio laterals after
  pool1..res4 (the paper's default is res3, res4), the time stride of the audio
  blocks in conv_a (the paper's is in the centre conv), PyTorchVideo's hidden
  width (a quarter of the audio channels; the default), the 7x1x1 Fast->Slow kernel
  and the parallel factorised audio convs (the default). Every weight and BN
  statistic is imported (the AVS projections, which PyTorchVideo lacks, are the
  only new variables)."""
  import jax
  from avslowfast_jax import model_builder
  pytest.importorskip('pytorchvideo')
  with iw.torchvision_stand_in():
    from pytorchvideo.models.audio_visual_slowfast import create_audio_visual_slowfast
  slow_len, fast_len, t_audio, mels, final = 2, 8, 32, 16, SIZE // 32
  net = create_audio_visual_slowfast(
      model_depth=18, stem_dim_outs=(8, 1, 4),
      head_pool_kernel_sizes=((slow_len, final, final), (fast_len, final, final),
                              (t_audio // 8, 1, mels // 8)))
  _randomise(net, slow_len, fast_len, SIZE, seed=5, audio_shape=(t_audio, mels))
  g = torch.Generator().manual_seed(6)
  inputs = [torch.randn(2, 3, slow_len, SIZE, SIZE, generator=g),
            torch.randn(2, 3, fast_len, SIZE, SIZE, generator=g),
            torch.randn(2, 1, t_audio, 1, mels, generator=g)]
  with torch.no_grad():
    logits = net(list(inputs)).numpy()  # the net replaces the list's items
  capsys.readouterr()  # PyTorchVideo's fusion block prints shapes
  state = {k: v.clone() for k, v in net.state_dict().items()}

  config = _config('tiny_avslowfast_8x8_r50', 7)
  config.model.audio_lateral_stages = ('pool1', 'res2', 'res3', 'res4')
  config.model.audio_lateral_hidden_channels = 0
  config.model.audio_factorized_conv = 'parallel'
  config.model.audio_time_stride = 'conv_a'
  result = iw.import_checkpoint(state, 'pytorchvideo_avslowfast', config)
  assert len(result.imported) == sum(1 for k in state if 'num_batches' not in k)
  assert result.initialised and all('/avs_' in p for p in result.initialised)
  assert result.imported['params/audio/res2_block0/conv_b_freq/kernel'] == \
      'blocks.1.multipathway_blocks.2.res_blocks.0.branch2.conv_b.0.weight'
  model, _ = model_builder.build(config)
  ours_in = {'slow': inputs[0].permute(0, 2, 3, 4, 1).numpy(),
             'fast': inputs[1].permute(0, 2, 3, 4, 1).numpy(),
             'audio': inputs[2][:, :, :, 0, :].permute(0, 2, 3, 1).numpy()}
  ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False)[0])(
      result.variables, ours_in))
  diff = np.abs(ours - logits).max()
  print(f'\navslowfast: max |logit| {np.abs(logits).max():.3g}; max abs difference {diff:.3g}')
  assert np.abs(logits).max() > 0.5
  assert diff < 2e-5
  # The paper's lateral placement (res3, res4) cannot take this checkpoint: named error.
  paper = _config('tiny_avslowfast_8x8_r50', 7)
  paper.model.audio_lateral_hidden_channels = 0
  with pytest.raises(iw.WeightImportError, match=r'to_visual_pool1.*audio_lateral_stages'):
    iw.import_checkpoint(state, 'pytorchvideo_avslowfast', paper)
