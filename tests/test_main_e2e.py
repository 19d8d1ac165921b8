"""End to end through ``python -m avslowfast_jax.main`` on tiny real shards.

Train (with periodic eval and a best checkpoint), SIGTERM mid-run, a NaN run
that must stop and leave the last checkpoint intact, resume past a damaged
newer checkpoint, compare the loss sequence with an uninterrupted run,
evaluate, export, reload the export and check it reproduces the evaluated
scores, and predict on real files.
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

TOTAL = td.STEPS['train.total_steps']
COMMON = td.step_flags()


@pytest.fixture(scope='module')
def dirs(tmp_path_factory):
  return td.session_dirs(tmp_path_factory)


def run_main(workdir, shards, cache, *extra, check=True, timeout=900):
  result = subprocess.run(td.main_command(workdir, shards, *COMMON, *extra, cache_dir=cache),
                          env=td.subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)
  if check:
    assert result.returncode == 0, result.stderr[-4000:]
  return result


def steps_in(path):
  return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


@pytest.mark.slow
def test_train_kill_nan_resume_eval_export_predict(tmp_path, dirs):
  shards, cache = dirs
  # 1. Uninterrupted run, with held-out evaluation at the end.
  uninterrupted = str(tmp_path / 'a')
  run_main(uninterrupted, shards, cache, f'--config.train.eval_every_steps={TOTAL}')
  losses_a = td.read_losses(uninterrupted)
  assert sorted(losses_a) == list(range(1, TOTAL + 1))
  assert steps_in(os.path.join(uninterrupted, 'checkpoints')) == [3, 6]
  assert steps_in(os.path.join(uninterrupted, 'best')) == [6]
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(uninterrupted))
  rows = [json.loads(line) for line in open(os.path.join(uninterrupted, 'train_metrics.jsonl'))]
  for key in ('train/loss_cls', 'train/loss_avs', 'train/top1', 'train/top5', 'train/lr',
              'train/drop_pathway_rate', 'train/clips_per_sec', 'train/step_time'):
    assert key in rows[0], key
  for row in rows:
    # A dropped audio pathway has nothing to synchronise: no AVS loss that step.
    if row['train/drop_pathway_rate'] == 1.0:
      assert row['train/loss_avs'] == 0.0, row
    else:
      assert row['train/loss_avs'] > 0.0, row
    # Curriculum: easy negatives for the first half (steps 1-3), then 1/4 hard.
    expected_hard = 0.25 if row['step'] > TOTAL // 2 else 0.0
    assert row['train/hard_negative_fraction'] == expected_hard, row

  # 2. Same run, SIGTERM as soon as it has logged a step: it saves and exits cleanly.
  resumed = str(tmp_path / 'b')
  proc = subprocess.Popen(td.main_command(resumed, shards, *COMMON,
                                          '--config.train.eval_every_steps=-1', cache_dir=cache),
                          env=td.subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  metrics_file = os.path.join(resumed, 'train_metrics.jsonl')
  deadline = time.time() + 900
  while not os.path.exists(metrics_file) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-4000:]
  killed_at = steps_in(os.path.join(resumed, 'checkpoints'))
  assert killed_at and killed_at[-1] < TOTAL, (killed_at, 'SIGTERM came too late to test')
  assert 'SIGTERM' in err

  # 3. A run whose inputs overflow to -inf (mean 1e39) must stop on the NaN with a clear
  #    message, and keep the last good checkpoint.
  bad = run_main(resumed, shards, cache, '--config.train.eval_every_steps=-1',
                 '--config.data.mean=(1e39,1e39,1e39)', check=False)
  assert bad.returncode != 0
  assert 'Loss became' in bad.stderr and 'last good checkpoint' in bad.stderr, bad.stderr[-3000:]
  assert 'in the window of steps' in bad.stderr, bad.stderr[-3000:]
  assert steps_in(os.path.join(resumed, 'checkpoints')) == killed_at

  # 4. Resume. A newer step whose array data was cut short by a crash (here run
  #    a's last step, truncated) is skipped and kept aside, not deleted; the run
  #    resumes from the newest intact step and the loss sequence equals the
  #    uninterrupted one.
  damaged = os.path.join(resumed, 'checkpoints', str(TOTAL))
  shutil.copytree(os.path.join(uninterrupted, 'checkpoints', str(TOTAL)), damaged)
  for name in os.listdir(os.path.join(damaged, 'default', 'd')):
    with open(os.path.join(damaged, 'default', 'd', name), 'r+b') as f:
      f.truncate(8)
  out = run_main(resumed, shards, cache, '--config.train.eval_every_steps=-1')
  assert f'Checkpoint step {TOTAL} is damaged' in out.stderr, out.stderr[-3000:]
  assert f'Resuming from {resumed}/checkpoints/{killed_at[-1]}' in out.stderr
  assert os.listdir(os.path.join(resumed, 'damaged_checkpoints')) == [str(TOTAL)]
  losses_b = td.read_losses(resumed)
  assert sorted(losses_b) == list(range(1, TOTAL + 1))
  np.testing.assert_allclose([losses_b[s] for s in range(1, TOTAL + 1)],
                             [losses_a[s] for s in range(1, TOTAL + 1)], rtol=1e-6)

  # 5. Evaluate the best checkpoint of run a (10x3-style multi-view, here 2x1).
  run_main(uninterrupted, shards, cache, '--mode=eval', '--config.eval.checkpoint=best')
  results = json.load(open(os.path.join(uninterrupted, 'eval_results.json')))
  assert results['step'] == TOTAL and results['num_videos'] == 3 and results['num_views'] == 6
  for key in ('top1', 'top5', 'mean_class_accuracy', 'per_class_accuracy'):
    assert key in results
  per_video = np.load(os.path.join(uninterrupted, 'per_video_scores.npz'))
  np.testing.assert_allclose(per_video['scores'].sum(-1), 1.0, rtol=1e-5)

  # 6. Export, reload without the training code, reproduce the evaluated scores.
  run_main(uninterrupted, shards, cache, '--mode=export', '--config.eval.checkpoint=best')
  export_dir = os.path.join(uninterrupted, 'export')
  # Lowered on this CPU for the accelerators too (with the native implementation).
  artifacts = json.load(open(os.path.join(export_dir, 'signature.json')))['artifacts']
  assert {'cpu', 'cuda', 'tpu'} <= set(artifacts), artifacts
  check = subprocess.run([sys.executable, '-c', RELOAD.format(export=export_dir, data=shards)],
                         env=td.subprocess_env(1), capture_output=True, text=True, timeout=600)
  assert check.returncode == 0, check.stderr[-3000:]
  scores = np.load(os.path.join(export_dir, 'reloaded_scores.npz'))
  np.testing.assert_array_equal(scores['video_index'], per_video['video_index'])
  np.testing.assert_allclose(scores['scores'], per_video['scores'], rtol=1e-4, atol=1e-6)

  # 7. predict: top-5 for a real file, a clear message for an unreadable one.
  video = os.path.join(os.path.dirname(shards), 'raw', 'videos', 'whistle', 'whistle_0000.mp4')
  broken = tmp_path / 'broken.mp4'
  broken.write_bytes(b'not a video')
  out = subprocess.run([sys.executable, '-m', 'avslowfast_jax.predict', '--model', export_dir,
                        video, str(broken)], env=td.subprocess_env(1), capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 1  # one file failed
  lines = out.stdout.strip().splitlines()
  assert lines[0].startswith(video + ':') and 'whistle' in lines[0], out.stdout
  assert len(lines[0].split(',')) == 3  # 3 classes -> top-3 of them
  assert 'cannot read' in lines[1] and str(broken) in lines[1], out.stdout


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
