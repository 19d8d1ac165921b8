"""Checkpoint keeping (last K + best), resolving names, partial restore for fine-tuning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax.train import checkpoints as ckpt_lib
from avslowfast_jax.train.state import TrainState


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
  with pytest.raises(FileNotFoundError, match='step 1'):
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
  with pytest.raises(FileNotFoundError, match='No latest checkpoint'):
    ckpt_lib.resolve_checkpoint(str(tmp_path), 'latest')
