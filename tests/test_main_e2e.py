"""End to end through ``python -m avslowfast_jax.main`` on tiny real shards.

Two training runs of the same config, each made once by a module fixture and read by
several tests: an uninterrupted run (periodic eval, a best checkpoint), which is then
evaluated, exported and used by predict; and a run that is killed with SIGTERM, fails
on a NaN loss and resumes past a damaged newer checkpoint to the uninterrupted run's
losses. All tests of this module run on one xdist worker (their xdist_group), so each
run is made once.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import train_testdata as td

# One xdist worker runs all of this module (pyproject.toml: --dist loadgroup), so its
# module-scoped runs are made once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('main_e2e')]

TOTAL = td.STEPS['train.total_steps']
COMMON = td.step_flags()


def run_main(workdir, data, *extra, check=True, timeout=900):
  shards, cache = data
  result = subprocess.run(td.main_command(workdir, shards, *COMMON, *extra, cache_dir=cache),
                          env=td.subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)
  if check:
    assert result.returncode == 0, result.stderr[-4000:]
  return result


def steps_in(path):
  return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


# ------------------------------------------------------------ the uninterrupted run

@pytest.fixture(scope='module')
def uninterrupted(train_data, tmp_path_factory):
  """The workdir of a whole run, with held-out evaluation at its last step."""
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  run_main(workdir, train_data, f'--config.train.eval_every_steps={TOTAL}')
  return workdir


@pytest.fixture(scope='module')
def evaluated(uninterrupted, train_data):
  """``(eval_results.json, per_video_scores.npz)`` of ``--mode=eval`` on the best checkpoint."""
  run_main(uninterrupted, train_data, '--mode=eval', '--config.eval.checkpoint=best')
  results = json.load(open(os.path.join(uninterrupted, 'eval_results.json')))
  return results, np.load(os.path.join(uninterrupted, 'per_video_scores.npz'))


@pytest.fixture(scope='module')
def exported(uninterrupted, train_data):
  """The export dir of ``--mode=export`` of the best checkpoint."""
  run_main(uninterrupted, train_data, '--mode=export', '--config.eval.checkpoint=best')
  return os.path.join(uninterrupted, 'export')


def test_run_logs_every_step_and_keeps_checkpoints_best_and_events(uninterrupted):
  assert sorted(td.read_losses(uninterrupted)) == list(range(1, TOTAL + 1))
  assert steps_in(os.path.join(uninterrupted, 'checkpoints')) == [3, 6]
  assert steps_in(os.path.join(uninterrupted, 'best')) == [6]
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(uninterrupted))


def test_train_metrics_have_avs_loss_every_step_and_the_negatives_curriculum(
    uninterrupted):
  rows = [json.loads(line) for line in open(os.path.join(uninterrupted, 'train_metrics.jsonl'))]
  for key in ('train/loss_cls', 'train/loss_avs', 'train/top1', 'train/top5', 'train/lr',
              'train/drop_pathway_rate', 'train/clips_per_sec', 'train/step_time'):
    assert key in rows[0], key
  junctions = max(row['train/avs_junctions'] for row in rows)
  for row in rows:
    # The authors' pattern: AVS at every step; with the audio pathway dropped
    # from the classifier it still runs for AVS, at every junction.
    assert row['train/loss_avs'] > 0.0, row
    if row['train/drop_pathway_rate'] == 1.0:
      assert row['train/avs_junctions'] == junctions, row
    # Curriculum: easy negatives for the first half (steps 1-3), then 1/4 hard.
    expected_hard = 0.25 if row['step'] > TOTAL // 2 else 0.0
    assert row['train/hard_negative_fraction'] == expected_hard, row


def test_eval_of_the_best_checkpoint_averages_the_views_of_each_video(evaluated):
  # 10x3-style multi-view testing, here 2x1 views of each of 3 videos.
  results, per_video = evaluated
  assert results['step'] == TOTAL and results['num_videos'] == 3 and results['num_views'] == 6
  for key in ('top1', 'top5', 'mean_class_accuracy', 'per_class_accuracy'):
    assert key in results
  np.testing.assert_allclose(per_video['scores'].sum(-1), 1.0, rtol=1e-5)


def test_export_is_lowered_for_cpu_and_the_accelerators(exported):
  # Lowered on this CPU for the accelerators too (with the native implementation).
  artifacts = json.load(open(os.path.join(exported, 'signature.json')))['artifacts']
  assert {'cpu', 'cuda', 'tpu'} <= set(artifacts), artifacts


def test_reloaded_export_reproduces_the_evaluated_scores(exported, evaluated, train_data):
  """The export, loaded without the training code, scores the evaluation views as eval did."""
  shards, _ = train_data
  check = subprocess.run([sys.executable, '-c', RELOAD.format(export=exported, data=shards)],
                         env=td.subprocess_env(1), capture_output=True, text=True, timeout=600)
  assert check.returncode == 0, check.stderr[-3000:]
  scores = np.load(os.path.join(exported, 'reloaded_scores.npz'))
  _, per_video = evaluated
  np.testing.assert_array_equal(scores['video_index'], per_video['video_index'])
  np.testing.assert_allclose(scores['scores'], per_video['scores'], rtol=1e-4, atol=1e-6)


def test_predict_prints_top_classes_and_a_clear_message_for_an_unreadable_file(
    exported, train_data, tmp_path):
  shards, _ = train_data
  video = os.path.join(os.path.dirname(shards), 'raw', 'videos', 'whistle', 'whistle_0000.mp4')
  broken = tmp_path / 'broken.mp4'
  broken.write_bytes(b'not a video')
  out = subprocess.run([sys.executable, '-m', 'avslowfast_jax.predict', '--model', exported,
                        video, str(broken)], env=td.subprocess_env(1), capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 1  # one file failed
  lines = out.stdout.strip().splitlines()
  assert lines[0].startswith(video + ':') and 'whistle' in lines[0], out.stdout
  assert len(lines[0].split(',')) == 3  # 3 classes -> top-3 of them
  assert 'cannot read' in lines[1] and str(broken) in lines[1], out.stdout


# ------------------------------------------------------------ killed, NaN, resumed

@pytest.fixture(scope='module')
def killed(train_data, tmp_path_factory):
  """The same run, sent SIGTERM as soon as it has logged a step: ``(workdir, checkpoint
  steps it left, process, stderr)``."""
  shards, cache = train_data
  workdir = str(tmp_path_factory.mktemp('resumed'))
  proc = subprocess.Popen(td.main_command(workdir, shards, *COMMON,
                                          '--config.train.eval_every_steps=-1', cache_dir=cache),
                          env=td.subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  metrics_file = os.path.join(workdir, 'train_metrics.jsonl')
  deadline = time.time() + 900
  while not os.path.exists(metrics_file) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=600)
  return workdir, steps_in(os.path.join(workdir, 'checkpoints')), proc, err


@pytest.fixture(scope='module')
def nan_stopped(killed, train_data):
  """A run in the killed run's workdir whose inputs overflow to -inf (mean 1e39), so
  its loss is NaN: ``(its result, the checkpoint steps it left)``."""
  workdir = killed[0]
  bad = run_main(workdir, train_data, '--config.train.eval_every_steps=-1',
                 '--config.data.mean=(1e39,1e39,1e39)', check=False)
  return bad, steps_in(os.path.join(workdir, 'checkpoints'))


@pytest.fixture(scope='module')
def resumed(nan_stopped, killed, uninterrupted, train_data):
  """The killed run resumed after the NaN stop, with a newer step whose array data a
  crash cut short (the uninterrupted run's last step, truncated) beside its own."""
  workdir = killed[0]
  damaged = os.path.join(workdir, 'checkpoints', str(TOTAL))
  shutil.copytree(os.path.join(uninterrupted, 'checkpoints', str(TOTAL)), damaged)
  for name in os.listdir(os.path.join(damaged, 'default', 'd')):
    with open(os.path.join(damaged, 'default', 'd', name), 'r+b') as f:
      f.truncate(8)
  return run_main(workdir, train_data, '--config.train.eval_every_steps=-1')


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(killed):
  _, killed_at, proc, err = killed
  assert proc.returncode == 0, err[-4000:]
  assert killed_at and killed_at[-1] < TOTAL, (killed_at, 'SIGTERM came too late to test')
  assert 'SIGTERM' in err


def test_nan_loss_stops_the_run_with_a_clear_message_and_keeps_the_last_checkpoint(
    nan_stopped, killed):
  bad, left = nan_stopped
  assert bad.returncode != 0
  assert 'Loss became' in bad.stderr and 'last good checkpoint' in bad.stderr, bad.stderr[-3000:]
  assert 'in the window of steps' in bad.stderr, bad.stderr[-3000:]
  assert left == killed[1]


def test_resume_sets_a_damaged_newer_checkpoint_aside_and_starts_from_the_intact_one(
    resumed, killed):
  workdir, killed_at = killed[:2]
  assert f'Checkpoint step {TOTAL} is damaged' in resumed.stderr, resumed.stderr[-3000:]
  assert f'Resuming from {workdir}/checkpoints/{killed_at[-1]}' in resumed.stderr
  # Kept aside, not deleted.
  assert os.listdir(os.path.join(workdir, 'damaged_checkpoints')) == [str(TOTAL)]


def test_resumed_run_repeats_the_uninterrupted_losses(resumed, killed, uninterrupted):
  del resumed  # run for its effect on the killed run's workdir
  losses_a = td.read_losses(uninterrupted)
  losses_b = td.read_losses(killed[0])
  assert sorted(losses_b) == list(range(1, TOTAL + 1))
  np.testing.assert_allclose([losses_b[s] for s in range(1, TOTAL + 1)],
                             [losses_a[s] for s in range(1, TOTAL + 1)], rtol=1e-6)


# Runs in a fresh interpreter: the export needs only jax + numpy (the eval
# views come from the pipeline, as predict.py does).
RELOAD = '''
import json, numpy as np, ml_collections
from avslowfast_jax import export
from data_pipelines import input_pipeline
import sys
assert 'avslowfast_jax.models' not in sys.modules and 'avslowfast_jax.train' not in sys.modules
model = export.load({export!r})
config = ml_collections.ConfigDict(json.load(open({export!r} + '/config.json')))
sums, counts = {{}}, {{}}
for batch in input_pipeline.create_eval_iterator(config, {data!r}, 'validation', 8,
                                                 process_index=0, process_count=1):
  s = model.scores({{k: batch[k] for k in model.input_names}})
  for row in np.flatnonzero(batch['valid'] > 0):
    v = int(batch['video_index'][row])
    sums[v] = sums.get(v, 0) + s[row]
    counts[v] = counts.get(v, 0) + 1
ids = sorted(sums)
np.savez({export!r} + '/reloaded_scores.npz', video_index=np.array(ids),
         scores=np.stack([sums[i] / counts[i] for i in ids]))
assert 'avslowfast_jax.models' not in sys.modules
'''
