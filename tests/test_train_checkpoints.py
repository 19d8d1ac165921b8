"""Checkpoint keeping (last K + best), resolving names, partial restore for fine-tuning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax.train.state import TrainState
from data_pipelines.errors import UserError


def make_state(step, head_classes=3, value=1.0):
  params = {'backbone': {'conv': {'kernel': jnp.full((3, 3, 2, 4), value)},
                         'bn': {'scale': jnp.full((4,), value)}},
            'head': {'classifier': {'kernel': jnp.full((4, head_classes), value)}}}
  stats = {'backbone': {'bn': {'mean': jnp.full((4,), value)}}}
  return TrainState(step=jnp.int32(step), params=params, batch_stats=stats,
                    opt_state={'momentum': jax.tree.map(jnp.zeros_like, params)})


def test_keeps_last_k_and_best(tmp_path):
  io = ckpt_lib.CheckpointIO(str(tmp_path), keep=2, best_metric='top1')
  for step, top1 in ((1, 0.2), (2, 0.9), (3, 0.4), (4, 0.5)):
    state = make_state(step, value=float(step))
    io.save(state)
    io.save_best(state, {'top1': top1, 'top5': 1.0})
  io.wait()
  assert sorted(io.latest.all_steps()) == [3, 4]
  assert io.best.all_steps() == [2]
  assert ckpt_lib.checkpoint_step(ckpt_lib.resolve_checkpoint(str(tmp_path), 'best')) == 2
  assert ckpt_lib.checkpoint_step(ckpt_lib.resolve_checkpoint(str(tmp_path), 'latest')) == 4
  assert ckpt_lib.checkpoint_step(ckpt_lib.resolve_checkpoint(str(tmp_path), '3')) == 3
  with pytest.raises(UserError, match='step 1'):
    ckpt_lib.resolve_checkpoint(str(tmp_path), '1')
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          make_state(0))
  restored = io.restore(abstract)
  assert int(restored.step) == 4
  np.testing.assert_array_equal(restored.params['backbone']['conv']['kernel'], 4.0)
  io.close()


def test_partial_restore_skips_new_head_and_reports(tmp_path):
  io = ckpt_lib.CheckpointIO(str(tmp_path / 'kinetics'), keep=1)
  io.save(make_state(7, head_classes=3, value=2.0))
  io.wait()
  io.close()
  target = make_state(0, head_classes=5, value=0.0)  # new 5-class head
  params, stats, report = ckpt_lib.load_pretrained(str(tmp_path / 'kinetics'),
                                                   jax.device_get(target.params),
                                                   jax.device_get(target.batch_stats),
                                                   skip_prefixes=('head',))
  np.testing.assert_array_equal(params['backbone']['conv']['kernel'], 2.0)
  np.testing.assert_array_equal(params['backbone']['bn']['scale'], 2.0)
  np.testing.assert_array_equal(stats['backbone']['bn']['mean'], 2.0)
  np.testing.assert_array_equal(params['head']['classifier']['kernel'], 0.0)
  assert report['skipped'] == ['params/head/classifier/kernel']
  assert len(report['loaded']) == 3
  # Without the skip, the head is still left alone because its shape differs.
  _, _, report = ckpt_lib.load_pretrained(str(tmp_path / 'kinetics'),
                                          jax.device_get(target.params),
                                          jax.device_get(target.batch_stats))
  assert report['shape_mismatch'] and 'head/classifier/kernel' in report['shape_mismatch'][0]


def test_missing_checkpoint_message(tmp_path):
  with pytest.raises(UserError, match='no latest checkpoint.*--mode train'):
    ckpt_lib.resolve_checkpoint(str(tmp_path), 'latest')


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _files(root):
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _damage(step_dir, how):
  if how == 'truncated':  # the array data of the step, cut short
    data = [p for p in (step_dir / 'default' / 'd').iterdir()]
    assert data
    for p in data:
      with open(p, 'r+b') as f:
        f.truncate(10)
  elif how == 'missing':  # the index of the step's arrays
    (step_dir / 'default' / 'manifest.ocdbt').unlink()
  else:  # the step folder exists, its writes never landed
    for p in sorted(step_dir.rglob('*'), reverse=True):
      p.unlink() if p.is_file() else p.rmdir()


@pytest.mark.parametrize('how', ['truncated', 'missing', 'empty'])
def test_resume_skips_a_damaged_newest_step_and_keeps_it(tmp_path, how):
  io = ckpt_lib.CheckpointIO(str(tmp_path), keep=3)
  for step in (1, 2, 3):
    io.save(make_state(step, value=float(step)))
  io.wait()
  io.close()
  step3 = tmp_path / 'checkpoints' / '3'
  _damage(step3, how)
  damaged = _files(step3)

  io = ckpt_lib.CheckpointIO(str(tmp_path), keep=3)
  state = io.restore_newest_intact(_abstract(make_state(0)))
  assert int(state.step) == 2
  np.testing.assert_array_equal(state.params['backbone']['conv']['kernel'], 2.0)
  # Nothing written is lost: the damaged step is moved aside byte for byte.
  assert _files(tmp_path / 'damaged_checkpoints' / '3') == damaged
  assert not step3.exists() and sorted(io.latest.all_steps()) == [1, 2]
  # Training on from step 2 saves step 3 again.
  io.save(make_state(3, value=30.0))
  io.wait()
  np.testing.assert_array_equal(io.restore(_abstract(make_state(0)), 3).params['head']
                                ['classifier']['kernel'], 30.0)
  io.close()


def test_resume_into_another_model_is_a_config_error_not_damage(tmp_path):
  io = ckpt_lib.CheckpointIO(str(tmp_path), keep=3)
  io.save(make_state(1))
  io.wait()
  with pytest.raises(UserError, match='checkpoints/1 does not fit this config'):
    io.restore_newest_intact(_abstract(make_state(0, head_classes=5)))
  assert io.latest.all_steps() == [1] and not (tmp_path / 'damaged_checkpoints').exists()
  assert ckpt_lib.CheckpointIO(str(tmp_path / 'fresh')).restore_newest_intact(
      _abstract(make_state(0))) is None
  io.close()


def test_saving_a_replicated_state_in_one_process_compiles_nothing(tmp_path):
  # A state replicated over the 8 test devices, as the trainer keeps it: in one
  # process each array is written from one device, with no per-device slices
  # (each would be an eager slice, compiled once per array shape).
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = jax.device_put(make_state(5, head_classes=16), replicated)
  compiles = []

  def listen(event, duration, **kwargs):
    del duration, kwargs
    if event == '/jax/core/compile/backend_compile_duration':
      compiles.append(event)

  io = ckpt_lib.CheckpointIO(str(tmp_path), keep=1)
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    io.save(state)
    io.wait()
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  io.close()
  assert len(jax.devices()) == 8 and not compiles, len(compiles)
  restored = ckpt_lib.CheckpointIO(str(tmp_path)).restore(_abstract(state))
  np.testing.assert_array_equal(restored.params['head']['classifier']['kernel'], 1.0)
