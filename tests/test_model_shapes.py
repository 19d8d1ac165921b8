"""Shapes of every pathway at every stage (abstract evaluation only), and every
config loading through get_config."""

import glob
import importlib
import os
import re

import jax
import pytest

from avslowfast_jax import model_builder
from avslowfast_jax.models.config import ModelConfig
from configs import ava, kinetics
from data_pipelines.errors import UserError

_BLOCK = re.compile(r'^((slow|fast)_)?res\d_block\d+$|^fast_to_slow_\w+$|^to_visual_\w+$')


def _stage_outputs(config, batch=2, size=224):
  """Abstract outputs of every block and lateral of the model (eval_shape)."""
  model, _ = model_builder.build(config)
  inputs = model_builder.input_specs(config, batch, image_size=size)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), inputs)

  def run(v, x):
    return model.apply(v, x, train=False, capture_intermediates=lambda m, name: (
        name == '__call__' and m.name is not None and bool(_BLOCK.match(m.name))))
  (logits, aux), state = jax.eval_shape(run, variables, inputs)
  inter = state['intermediates']
  out = {}
  for name, value in inter.items():
    if name == 'audio':
      for sub, v in value.items():
        out[f'audio/{sub}'] = v['__call__'][0].shape
    else:
      out[name] = value['__call__'][0].shape
  return logits, aux, out


@pytest.mark.parametrize('inst,t_slow,t_fast', [('4x16', 4, 32), ('8x8', 8, 32)])
def test_every_stage_shape(inst, t_slow, t_fast):
  config = kinetics.get_config(f'avslowfast_{inst}_r50')
  b = 2
  logits, aux, out = _stage_outputs(config, b, 224)
  last = {'res2': 2, 'res3': 3, 'res4': 5, 'res5': 2}
  spatial = {'res2': 56, 'res3': 28, 'res4': 14, 'res5': 7}
  slow_c = {'res2': 256, 'res3': 512, 'res4': 1024, 'res5': 2048}
  audio_tf = {'res2': (128, 80), 'res3': (64, 40), 'res4': (32, 20), 'res5': (16, 10)}
  for stage, i in last.items():
    s = spatial[stage]
    assert out[f'slow_{stage}_block{i}'] == (b, t_slow, s, s, slow_c[stage])
    assert out[f'fast_{stage}_block{i}'] == (b, t_fast, s, s, slow_c[stage] // 8)
    assert out[f'audio/{stage}_block{i}'] == (b, *audio_tf[stage], slow_c[stage] // 2)
  # Fast->Slow laterals land on Slow's time steps with 2 * beta_f * C channels.
  for stage, (s, c) in {'pool1': (56, 16), 'res2': (56, 64), 'res3': (28, 128),
                        'res4': (14, 256)}.items():
    assert out[f'fast_to_slow_{stage}'] == (b, t_slow, s, s, c)
  # A->FS laterals: Slow's length, Slow's channels after the Fast->Slow concat.
  assert out['audio/to_visual_res3'] == (b, t_slow, 512 + 128)
  assert out['audio/to_visual_res4'] == (b, t_slow, 1024 + 256)
  assert logits.shape == (b, 400)
  assert aux['features']['slow'].shape == (b, 2048)
  assert aux['features']['fast'].shape == (b, 256)
  assert aux['features']['audio'].shape == (b, 1024)
  assert aux['audio_var'].shape == (b,)
  assert set(aux['avs']) == {'res3', 'res4', 'pool5'}
  for junction in aux['avs'].values():
    assert junction['visual'].shape == junction['audio'].shape == (b, 64)


def test_r101_nonlocal_blocks_and_variants():
  """R101+NL has Non-local blocks after res4 blocks 6, 13, 20; audio-only and
  SlowFast variants have the right outputs."""
  c = kinetics.get_config('slowfast_8x8_r101')
  c.model.nonlocal_stages = ('res4',)
  c.model.nonlocal_every = 7
  model, _ = model_builder.build(c)
  inputs = model_builder.input_specs(c, 1, image_size=64)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), inputs)
  names = set(variables['params'])
  assert {n for n in names if 'nonlocal' in n} == {
      'slow_res4_nonlocal6', 'slow_res4_nonlocal13', 'slow_res4_nonlocal20'}
  assert 'slow_res4_block22' in names and not any(n.startswith('audio') for n in names)
  audio_cfg = kinetics.get_config('audio_8x8_r50')
  model, _ = model_builder.build(audio_cfg)
  inputs = model_builder.input_specs(audio_cfg, 2)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), {'audio': inputs['audio']})
  logits, aux = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                               {'audio': inputs['audio']})
  assert logits.shape == (2, 400) and set(aux['features']) == {'audio'}
  assert set(variables['params']) == {'audio', 'head'}


def test_temporal_kernel_only_in_the_leading_blocks_of_each_stage():
  """``model.temporal_kernel_blocks`` (PySlowFast's NUM_BLOCK_TEMP_KERNEL): AVA's SlowFast
  R101+NL inflates res4's first 6 of 23 blocks, in both visual pathways; the AVSlowFast
  R101 model every block."""
  def conv_a_time(variant):
    c = ava.get_config(variant)
    model, _ = model_builder.build(c)
    inputs = model_builder.input_specs(c, 1, image_size=64)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), inputs)['params']
    return {f'{p}{i}': params[f'{p}_res4_block{i}']['conv_a']['kernel'].shape[0]
            for p in ('slow', 'fast') for i in (0, 5, 6, 22)}

  assert conv_a_time('slowfast_8x8_r101_nl') == {'slow0': 3, 'slow5': 3, 'slow6': 1,
                                                  'slow22': 1, 'fast0': 3, 'fast5': 3,
                                                  'fast6': 1, 'fast22': 1}
  assert set(conv_a_time('avslowfast_8x8_r101_nl').values()) == {3}
  with pytest.raises(UserError, match='temporal_kernel_blocks'):
    ModelConfig.from_config({'temporal_kernel_blocks': (3, 4)})


def _config_modules():
  root = os.path.join(os.path.dirname(__file__), '..', 'configs')
  for path in sorted(glob.glob(os.path.join(root, '*.py'))):
    name = os.path.splitext(os.path.basename(path))[0]
    if name != '__init__' and not name.endswith('common'):  # common*.py: shared helpers
      yield name


@pytest.mark.parametrize('module_name', list(_config_modules()))
def test_every_config_loads(module_name):
  """Convention: a family file lists its variants in ``VARIANTS``; a file
  without it is loaded with ``get_config()``'s default."""
  module = importlib.import_module(f'configs.{module_name}')
  variants = getattr(module, 'VARIANTS', None)
  configs = [module.get_config(v) for v in variants] if variants else [module.get_config()]
  for config in configs:
    assert config.model.arch in ('avslowfast', 'slowfast', 'audio')
    model_builder.build(config)  # validates the model fields and the task


def test_verb_noun_head_and_fusion_variants():
  """EPIC's two heads; A->F->S laterals match Fast; AV-NL queries are half of Slow."""
  c = kinetics.get_config('avslowfast_8x8_r50')
  c.task = 'verb_noun'
  c.model.num_classes, c.model.num_nouns = 97, 300
  logits, _, _ = _stage_outputs(c, 2, 64)
  assert logits['verb'].shape == (2, 97) and logits['noun'].shape == (2, 300)
  c.model.fusion = 'a_f_s'
  _, _, out = _stage_outputs(c, 2, 64)
  assert out['audio/to_visual_res3'] == (2, 32, 64)
  assert out['audio/to_visual_res4'] == (2, 32, 128)
  c.model.fusion = 'av_nonlocal'
  _, _, out = _stage_outputs(c, 2, 64)
  assert out['audio/to_visual_res3'] == (2, 8, 320)
