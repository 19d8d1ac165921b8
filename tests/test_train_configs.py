"""Every config loads; recipes match the paper's appendix A; model fields are defined once.

Mistakes on the command line are tested in test_entry_point_errors.py.
"""

import importlib
import os

import pytest

from avslowfast_jax import cli, drop_pathway
from data_pipelines.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, 'avslowfast_jax', 'studies', 'configs', 'quickstart.py')
FAMILIES = ('configs.kinetics', 'configs.kinetics_sounds', 'configs.epic_kitchens',
            'configs.charades', 'avslowfast_jax.studies.configs.quickstart',
            'avslowfast_jax.studies.configs.pretrain_synthetic')


@pytest.mark.parametrize('family', FAMILIES)
def test_every_variant_loads_and_has_a_command(family):
  module = importlib.import_module(family)
  assert module.VARIANTS
  assert 'python -m avslowfast_jax.main' in module.__doc__
  for variant in module.VARIANTS:
    c = module.get_config(variant)
    assert c.train.batch_size % c.model.bn_group_size == 0 or c.model.bn_group_size > \
        c.train.batch_size, variant
    assert c.model.num_classes > 0


def test_recipes():
  from configs import charades, epic_kitchens, kinetics  # pylint: disable=g-import-not-at-top
  k = kinetics.get_config('avslowfast_4x16_r50')
  assert (k.train.base_lr, k.train.reference_batch_size, k.train.warmup_start_lr) == (0.1, 64, 0.01)
  assert k.train.num_epochs == 256 and k.avs.enabled and k.train.drop_pathway_prob == (0.8,)
  assert kinetics.get_config('avslowfast_8x8_r50').train.num_epochs == 196
  assert kinetics.get_config('slowfast_4x16_r50').train.drop_pathway_prob == (0.0,)
  e = epic_kitchens.get_config('avslowfast_8x8_r101')  # the separate models: test_epic.py
  assert e.task == 'verb_noun' and e.model.freeze_bn and e.train.batch_size == 32
  assert e.train.base_lr == 0.01 and e.train.schedule == 'steps'
  assert [x / e.train.total_steps for x in e.train.lr_decay_steps] == pytest.approx(
      [2 / 3, 5 / 6], abs=1e-4)
  assert epic_kitchens.get_config('avslowfast_8x8_r101_noun').train.base_lr == 0.0006
  ch = charades.get_config('avslowfast_16x8_r101_nl')
  assert (ch.task, ch.eval.aggregate, ch.model.dropout_rate) == ('multilabel', 'max', 0.7)
  assert (ch.train.batch_size, ch.train.base_lr, ch.train.total_steps) == (8, 0.07, 40000)
  assert tuple(ch.train.lr_decay_steps) == (32000,) and ch.model.nonlocal_stages == ('res4',)
  assert ch.data.num_frames == 64 and ch.model.depth == 101
  # Appendix A: R101 trains with scale jitter [256, 340]; R101+NL 16x8 is a listed model.
  assert tuple(ch.data.train_jitter_scales) == (256, 340)
  assert tuple(k.data.train_jitter_scales) == (256, 320)
  assert 'avslowfast_16x8_r101_nl' in kinetics.VARIANTS
  nl = kinetics.get_config('avslowfast_16x8_r101_nl')
  assert (nl.model.depth, nl.model.nonlocal_stages, nl.model.nonlocal_every) == (101, ('res4',), 7)
  assert (nl.data.num_frames, nl.data.sampling_rate, nl.model.alpha_f) == (64, 2, 4)
  assert tuple(nl.data.train_jitter_scales) == (256, 340) and nl.train.num_epochs == 196


@pytest.mark.parametrize('rates,on,scale', [
    ((1.0, 0.4), True, 0.6),   # the quickstart's: laterals at 1 - the last step's rate
    ((0.8,), True, 0.2),       # a constant rate: 1 - P_d
    ((0.0,), True, 1.0),       # no DropPathway: the laterals as trained
    ((0.8,), False, 1.0)])     # the paper's model: no scaling
def test_eval_lateral_scale_follows_the_last_drop_rate(rates, on, scale):
  c = cli.load_config_file(QUICKSTART + ':avslowfast')
  assert c.eval.scale_audio_laterals  # the quickstart evaluates with the rule
  c.train.drop_pathway_prob = rates
  c.eval.scale_audio_laterals = on
  assert drop_pathway.eval_lateral_scale(c) == pytest.approx(scale)


def test_paper_configs_do_not_scale_the_laterals():
  for path, variant in (('configs/kinetics.py', 'avslowfast_4x16_r50'),
                        ('configs/pretrain.py', 'avslowfast_8x8_r50'),
                        ('configs/epic_kitchens.py', 'avslowfast_8x8_r101_verb'),
                        ('configs/ava.py', 'avslowfast_4x16_r50')):
    c = cli.project_config(path, variant)
    assert drop_pathway.eval_lateral_scale(c) == 1.0, path
  ssl = cli.load_config_file(QUICKSTART.replace('quickstart.py', 'pretrain_synthetic.py'))
  assert drop_pathway.eval_lateral_scale(ssl) == 1.0
  assert drop_pathway.rates(ssl.train) == (0.8, 0.8)


def test_model_fields_are_defined_once_and_unknown_ones_are_errors():
  """The model section of every config is ModelConfig's fields with their
  defaults; a model config with a field ModelConfig lacks is an error naming it."""
  from avslowfast_jax.models import ModelConfig, build_model  # pylint: disable=g-import-not-at-top
  from configs import common  # pylint: disable=g-import-not-at-top
  assert common.base_config().model.to_dict() == ModelConfig().to_dict()
  fields = dict(ModelConfig().to_dict(), widht=32)
  with pytest.raises(UserError, match='widht'):
    build_model(fields)
  with pytest.raises(UserError, match='conv_impl'):
    build_model(dict(ModelConfig().to_dict(), conv_impl='lowered'))
  # A tuple of stages typed without quotes arrives as its text.
  for stages in ('(res4,)', ('(res4,)',)):
    with pytest.raises(UserError, match=r"audio_lateral_stages: '\(res4,\)' is not .* quoted"):
      build_model(dict(ModelConfig().to_dict(), audio_lateral_stages=stages))
