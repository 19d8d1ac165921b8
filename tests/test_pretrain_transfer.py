"""Label-free pretraining (AVS + rotation) and transfer: linear probe, cached probe, fine-tuning."""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from avslowfast_jax import trees
from avslowfast_jax.tasks import pretrain as pretrain_task
from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax.train import schedules
from avslowfast_jax.train.state import TrainState
from avslowfast_jax.studies import ssl_evidence
from avslowfast_jax.studies.configs import pretrain_synthetic
from configs import hmdb51, pretrain, transfer_common, ucf101
from data_pipelines.errors import UserError
import train_testdata as td


# ----------------------------------------------------------------- units
def test_rotation_turns_every_visual_frame_alike_and_leaves_audio():
  config = pretrain_synthetic.get_config('pretrain')
  task = pretrain_task.Pretrain(config)
  rng = np.random.default_rng(0)
  fast = jnp.asarray(rng.standard_normal((8, 4, 6, 6, 3)), jnp.float32)
  batch = {'fast': fast, 'slow': fast[:, ::2], 'audio': jnp.ones((8, 5, 3, 1))}
  out = task.transform_inputs(batch, jax.random.PRNGKey(3))
  turns = np.asarray(out['rotation'])
  assert set(turns) > {0}  # 8 clips: more than one angle drawn
  for b, k in enumerate(turns):
    np.testing.assert_array_equal(out['fast'][b], np.rot90(np.asarray(fast[b]), k, axes=(1, 2)))
    np.testing.assert_array_equal(out['slow'][b],
                                  np.rot90(np.asarray(fast[b, ::2]), k, axes=(1, 2)))
  assert out['audio'] is batch['audio']
  with pytest.raises(UserError, match='square crops'):
    pretrain_task.rotate_clips(jnp.zeros((1, 2, 4, 6, 3)), jnp.zeros((1,), jnp.int32))
  config.pretext.rotation = False  # switched off: the batch as it was, no rotation loss
  off = pretrain_task.Pretrain(config)
  assert off.transform_inputs(batch, jax.random.PRNGKey(3)) is batch
  assert float(off.loss(jnp.zeros((8, 4)), batch)[0]) == 0.0


def test_pretraining_recipe():
  c = pretrain.get_config('avslowfast_16x4_r50')
  assert (c.task, c.model.alpha_f, c.data.num_frames // c.model.alpha_f) == ('pretrain', 2, 16)
  plan = schedules.make_plan(c.train, 0)
  lr = schedules.create_learning_rate_fn(c.train.schedule, plan)
  got = [float(lr(s)) for s in (0, 5_000, 10_000, 79_999, 80_000, 100_000, 110_000, 119_999)]
  np.testing.assert_allclose(got, [0.001, 0.8005, 1.6, 1.6, 0.16, 0.016, 0.0016, 0.0016],
                             rtol=1e-5)
  assert (plan.total_steps, c.train.batch_size) == (120_000, 1024)
  assert round(c.avs.hard_start * plan.total_steps) == 60_000 and c.avs.hard_fraction == 0.25
  assert pretrain.get_config('slowfast_4x16_r50').avs.enabled is False


def test_transfer_configs_and_splits():
  u = ucf101.get_config('linear_split2')
  assert (u.model.num_classes, u.train.linear_probe, u.train.total_steps) == (101, True, 320_000)
  assert (u.train.batch_size, u.train.base_lr, u.train.schedule) == (64, 0.01, 'cosine')
  assert (u.data.train_split, u.data.eval_split, u.train.init_strict) == ('train', 'test', True)
  f = ucf101.get_config('avslowfast_16x4_r50_finetune_split3')
  assert (f.train.total_steps, f.train.base_lr, f.train.batch_size) == (80_000, 0.005, 16)
  assert not f.train.linear_probe and f.model.alpha_f == 2
  h = hmdb51.get_config('finetune_split1')
  assert (h.model.num_classes, h.train.total_steps, h.train.base_lr) == (51, 30_000, 0.01)
  assert len(ucf101.VARIANTS) == len(set(ucf101.VARIANTS)) == 36
  with pytest.raises(UserError, match='linear or finetune'):
    transfer_common.parse_variant('linear_split4')


def _state(width, value, head=None):
  params = {'slow_res2': {'kernel': jnp.full((3, width), value)},
            'slow_res3': {'kernel': jnp.full((width, 4), value)},
            'head': head or {'classifier': {'kernel': jnp.full((4, 5), value)}}}
  stats = {'slow_res2': {'mean': jnp.full((width,), value)}}
  return TrainState(step=jnp.int32(1), params=params, batch_stats=stats, opt_state={})


def test_other_architecture_is_an_error_listing_it_and_pretext_head_is_reported(tmp_path):
  io = ckpt_lib.CheckpointIO(str(tmp_path / 'ssl'), keep=1, async_save=False)
  io.save(_state(8, 2.0, head={'rotation': {'kernel': jnp.ones((4, 4))}}))
  io.close()
  target = _state(8, 0.0)
  params, stats, report = ckpt_lib.load_pretrained(
      str(tmp_path / 'ssl'), jax.device_get(target.params), jax.device_get(target.batch_stats),
      ('head',), strict=True)
  assert float(params['slow_res2']['kernel'][0, 0]) == 2.0
  assert float(params['head']['classifier']['kernel'][0, 0]) == 0.0
  assert report['unused'] == ['params/head/rotation/kernel']
  assert any('dropped the checkpoint\'s head (head/rotation' in line
             for line in ckpt_lib.describe_report(report))
  other = _state(16, 0.0)  # another width: two arrays of other shapes
  other.params['slow_res4'] = {'kernel': jnp.zeros((2, 2))}  # and one the checkpoint lacks
  with pytest.raises(UserError) as error:
    ckpt_lib.load_pretrained(str(tmp_path / 'ssl'), jax.device_get(other.params),
                             jax.device_get(other.batch_stats), ('head',), strict=True)
  message = str(error.value)
  assert 'another architecture' in message
  for name in ('params/slow_res2/kernel: (3, 8) vs (3, 16)', 'params/slow_res3/kernel',
               'batch_stats/slow_res2/mean', 'not in the checkpoint: params/slow_res4/kernel'):
    assert name in message, name
  assert 'print_main_commands' not in message  # no config.json: not a training run
  (tmp_path / 'ssl' / 'config.json').write_text('{}')
  with pytest.raises(UserError, match=r'ssl/config.json holds the model(.|\n)*'
                     r'--print_main_commands'):
    ckpt_lib.load_pretrained(str(tmp_path / 'ssl'), jax.device_get(other.params),
                             jax.device_get(other.batch_stats), ('head',), strict=True)
  # Not strict (the default, e.g. Non-local blocks added): reported, not an error.
  _, _, report = ckpt_lib.load_pretrained(str(tmp_path / 'ssl'), jax.device_get(other.params),
                                          jax.device_get(other.batch_stats), ('head',))
  assert len(report['shape_mismatch']) == 3 and report['missing'] == ['params/slow_res4/kernel']


def test_linear_layer_on_cached_features_learns_separable_classes():
  from avslowfast_jax.tools import transfer  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  centres = rng.standard_normal((3, 16)) * 3
  labels = rng.integers(0, 3, 300)
  feats = (centres[labels] + rng.standard_normal((300, 16))).astype(np.float32)
  train = ucf101.get_config('linear_split1').train
  train.total_steps, train.batch_size = 300, 32
  head, final_loss = transfer.train_linear(feats, labels, 3, train)
  accuracy = np.mean(np.argmax(feats @ head['kernel'] + head['bias'], -1) == labels)
  assert accuracy > 0.95 and final_loss < 0.3 * math.log(3), (accuracy, final_loss)


def _prepared(folder, num_classes):
  """A stand-in for a prepared dataset of ``num_classes`` classes (its metadata only)."""
  folder.mkdir(parents=True)
  (folder / 'shards.json').write_text(json.dumps(
      {'name': 'x', 'fps': 30.0, 'short_side': 40, 'audio_sample_rate': 16000,
       'splits': {'train': {'files': [], 'lengths': [1]}}}))
  (folder / 'label_map.json').write_text(json.dumps(
      {'labels': [f'c{i}' for i in range(num_classes)]}))
  return str(folder)


def _export(tmp_path):
  """An export folder (weights.npz): what run_protocol's first check accepts."""
  folder = tmp_path / 'export'
  folder.mkdir(exist_ok=True)
  (folder / 'weights.npz').write_bytes(b'')
  return str(folder)


def test_transfer_checks_every_split_before_training_any(tmp_path, monkeypatch):
  from avslowfast_jax.tools import transfer  # pylint: disable=g-import-not-at-top
  trained = []
  monkeypatch.setattr(transfer, 'trained_probe', lambda c, w: trained.append(w) or {'top1': 1.0})
  _prepared(tmp_path / 'ucf_split1', 101)
  pattern = str(tmp_path / 'ucf_split{split}')
  export = _export(tmp_path)
  with pytest.raises(UserError, match=r'ucf_split2: no prepared split 2'):
    transfer.run_protocol('ucf101', 'linear', export, pattern, str(tmp_path / 'w'), splits=(1, 2))
  _prepared(tmp_path / 'ucf_split2', 51)  # an HMDB51 folder under --dataset ucf101
  with pytest.raises(UserError) as error:
    transfer.run_protocol('ucf101', 'linear', export, pattern, str(tmp_path / 'w'), splits=(1, 2))
  message = str(error.value)
  assert '\n' not in message and str(tmp_path / 'ucf_split2') in message
  assert '51 classes' in message and '101-way' in message
  assert not trained  # nothing trained before every folder passed
  # An 8-class folder (the synthetic data) under a 101-way head: refused the same way.
  with pytest.raises(UserError, match=r'8 classes, but --dataset ucf101 is 101-way'):
    transfer.run_protocol('ucf101', 'cached', export, _prepared(tmp_path / 'synth', 8),
                          str(tmp_path / 'w'), splits=(1,))


def test_transfer_writes_each_split_as_it_finishes(tmp_path, monkeypatch):
  from avslowfast_jax.tools import transfer  # pylint: disable=g-import-not-at-top
  for split in (1, 2, 3):
    _prepared(tmp_path / f'hmdb_split{split}', 51)

  def probe(config, workdir):
    if workdir.endswith('split3'):
      raise RuntimeError('the machine went away')
    return {'top1': 0.25 if workdir.endswith('split1') else 0.75, 'top5': 1.0}
  monkeypatch.setattr(transfer, 'trained_probe', probe)
  workdir = tmp_path / 'w'
  with pytest.raises(RuntimeError):
    transfer.run_protocol('hmdb51', 'finetune', _export(tmp_path),
                          str(tmp_path / 'hmdb_split{split}'), str(workdir))
  saved = json.loads((workdir / 'transfer_results.json').read_text())
  assert sorted(saved['splits']) == ['1', '2'] and saved['mean']['top1'] == 0.5


def test_main_command_takes_the_backbone_of_the_pretraining_run(tmp_path, monkeypatch):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.tools import transfer  # pylint: disable=g-import-not-at-top
  run = tmp_path / 'ssl'
  run.mkdir()
  pretrained = pretrain_synthetic.get_config('pretrain')
  (run / 'config.json').write_text(pretrained.to_json_best_effort())
  monkeypatch.chdir(td.REPO)
  out = transfer.main(['--pretrained', str(run), '--dataset', 'ucf101', '--data_dir',
                       '/data/ucf101_split{split}', '--workdir', str(tmp_path / 'w'),
                       '--print_main_commands'])
  assert len(out['commands']) == 3
  tokens = out['commands'][1].replace('\\\n', ' ').split()
  assert tokens[:5] == ['python', '-m', 'avslowfast_jax.main', '--config',
                        'configs/ucf101.py:linear_split2']
  assert tokens[tokens.index('--workdir') + 1] == str(tmp_path / 'w' / 'split2')
  argv = ['main', *tokens[3:5], *(t for t in tokens if t.startswith('--config.'))]
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file('config', None, 'config', flag_values=values,
                                           lock_config=True, sys_argv=argv)
  values(argv)
  config = holder.value
  assert config.train.init_from == str(run)
  assert config.data.data_dir == '/data/ucf101_split2'
  expected = transfer.split_config('ucf101', 'linear', 2, str(run), '/data/ucf101_split2')
  assert config.model.to_dict() == expected.model.to_dict()
  for key in ('num_frames', 'sampling_rate'):
    assert config.data[key] == expected.data[key] == pretrained.data[key]
  assert config.data.audio.num_frames == pretrained.data.audio.num_frames
  assert (config.model.width, tuple(config.model.stage_blocks)) == (16, (1, 1, 1, 1))
  assert config.model.num_classes == 101


# ------------------------------------------------------------ end to end
def _tiny(config, shards):
  values = {**td.TINY, 'data.data_dir': shards, 'model.width': 8,
            'model.audio_lateral_hidden_channels': 8, 'train.log_every_steps': 1,
            'train.checkpoint_every_steps': 100, 'train.async_checkpoints': False,
            'train.warmup_steps': 0}
  values.pop('train.optimizer')
  for key, value in values.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


@pytest.mark.slow
def test_pretrain_then_cached_probe_then_linear_and_finetune(tmp_path, train_data):
  from avslowfast_jax.tools import transfer  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.train import trainer  # pylint: disable=g-import-not-at-top
  shards, cache = train_data
  td.enable_compilation_cache(cache)

  # 1. Label-free pretraining, both pretexts, the hard negatives from step 3 of 4.
  c = _tiny(pretrain_synthetic.get_config('pretrain'), shards)
  c.train.total_steps = 4
  c.train.drop_pathway_prob = (0.0,)
  c.model.num_classes = 1  # unused by the pretext head: labels play no part
  ssl_dir = str(tmp_path / 'ssl')
  last = trainer.train_and_evaluate(c, ssl_dir)
  for key in ('loss', 'loss_rotation', 'loss_avs', 'rotation_top1', 'avs_top1'):
    assert np.isfinite(last[key]), key
  assert last['hard_negative_fraction'] == 0.25  # the last step's: after the switch
  item = ckpt_lib.resolve_checkpoint(ssl_dir, 'latest')
  saved = trees.flatten(ckpt_lib.checkpoint_shapes(item)['params'])
  assert 'head/rotation/kernel' in saved and not any('classifier' in k for k in saved)

  # 2. Cached linear probe: the pretext head is dropped and reported; the loss falls.
  probe = ssl_evidence.evidence_probe_config(c, probe_steps=200)
  # The study's probe config has the study's backbone; this test pretrained a narrower one.
  for key in ('width', 'audio_lateral_hidden_channels', 'bn_group_size'):
    probe.model[key] = c.model[key]
  probe.train.base_lr = 0.1
  metrics = transfer.cached_linear_probe(probe, ssl_dir, epochs=1.0)
  assert any("dropped the checkpoint's head (head/rotation" in l for l in metrics['init_report'])
  assert metrics['num_videos'] == 3 and 0.0 <= metrics['top1'] <= 1.0
  assert metrics['final_train_loss'] < math.log(3)

  # 3. The paper's linear probe through the training loop: only the head moves.
  probe.train.total_steps = 2
  probe.train.init_from = ssl_dir
  lin_dir = str(tmp_path / 'linear')
  last = trainer.train_and_evaluate(probe, lin_dir)
  assert np.isfinite(last['loss'])
  before = ckpt_lib.read_weights(ssl_dir)
  after = ckpt_lib.read_weights(lin_dir)
  backbone = [k for k in after['params'] if not k.startswith('head/')]
  assert backbone and after['batch_stats']
  for key in backbone:
    np.testing.assert_array_equal(after['params'][key], before['params'][key], err_msg=key)
  for key, value in after['batch_stats'].items():
    np.testing.assert_array_equal(value, before['batch_stats'][key], err_msg=key)
  assert 'head/classifier/kernel' in after['params']
  assert np.abs(after['params']['head/classifier/bias']).max() > 0  # the head did train

  # 4. Fine-tuning all layers: the backbone moves too.
  tune = ml_collections.ConfigDict(probe.to_dict())
  tune.train.linear_probe = False
  tune_dir = str(tmp_path / 'finetune')
  last = trainer.train_and_evaluate(tune, tune_dir)
  assert np.isfinite(last['loss'])
  tuned = ckpt_lib.read_weights(tune_dir)
  assert any(not np.array_equal(tuned['params'][k], before['params'][k]) for k in backbone)

  # 5. A checkpoint of another architecture (width 16): a clear error listing what differs.
  wide = ml_collections.ConfigDict(probe.to_dict())
  wide.model.width = 16
  with pytest.raises(UserError, match=r'another architecture(.|\n)*shape differs: params/'):
    transfer.cached_linear_probe(wide, ssl_dir, epochs=1.0)


@pytest.mark.slow
def test_control_keeps_random_weights_and_calibrates_batch_norm(tmp_path, tmp_path_factory):
  from avslowfast_jax import model_builder  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.tools import transfer  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.train import trainer  # pylint: disable=g-import-not-at-top
  shards, cache = td.session_dirs(tmp_path_factory)
  td.enable_compilation_cache(cache)
  # The evidence's control: AVS + rotation pretraining at learning rate 0.
  c = _tiny(pretrain_synthetic.get_config('pretrain'), shards)
  c.train.total_steps = 3
  c.train.warmup_steps = 2
  c.model.num_classes = 1
  from avslowfast_jax import cli  # pylint: disable=g-import-not-at-top
  cli.set_fields(c, ssl_evidence.BACKBONES[ssl_evidence.CONTROL][1])
  run = str(tmp_path / 'control')
  trainer.train_and_evaluate(c, run)
  # The probe of the same (test-size) model.
  probe = _tiny(ssl_evidence.evidence_probe_config(c, probe_steps=10), shards)
  model, _ = model_builder.build(probe)
  # The random init of the same seed (the evidence's random-init row) and the control:
  # the same weights, other BatchNorm statistics.
  fresh, _ = transfer.backbone_variables(probe, model, None, c.seed)
  control, report = transfer.backbone_variables(probe, model, run, c.seed)
  assert report['loaded'] and not report['missing'] and not report['shape_mismatch']
  params = trees.flatten(control['params'])
  # Equal up to the rounding of the initialisers, which two programs (the pretraining and
  # the probe model) may compile differently; an AdamW step of any rate would move them
  # by far more.
  for key, value in trees.flatten(fresh['params']).items():
    if not key.startswith('head/'):
      np.testing.assert_allclose(params[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
  stats = trees.flatten(control['batch_stats'])
  moved = [k for k, v in trees.flatten(fresh['batch_stats']).items()
           if not np.allclose(stats[k], v)]
  assert len(moved) > len(stats) // 2
