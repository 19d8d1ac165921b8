"""AVA end to end on the built-in detection data: prepare, train a tiny detection model,
evaluate (frame mAP + detections.csv), export and predict.

Runs in this process (the steps ``python -m avslowfast_jax.main`` runs for
``--mode train``, ``eval`` and ``export``, and ``predict``'s ``main``) to stay
inside the test budget. The trained model must beat, by a clear margin, the
constant-score baseline: the same detected boxes and classes, every score equal.
"""

import io
import json
import os
import sys

import numpy as np
import pytest

from avslowfast_jax import main as main_lib
from avslowfast_jax import predict
from avslowfast_jax.metrics import ava_frame_map as ava_eval
from avslowfast_jax.evaluation import evaluator
from avslowfast_jax.train import trainer
from configs import ava as ava_configs
from data_pipelines import ava_prepare, prepare, synthetic_detection

CLASSES = ('left_right', 'whistle')
STEPS = 40


def _constant_scores(detections_csv, out_csv):
  with open(detections_csv) as f, open(out_csv, 'w') as g:
    for line in f:
      g.write(','.join(line.strip().split(',')[:7] + ['0.5']) + '\n')


@pytest.mark.slow
def test_prepare_train_eval_export_predict(tmp_path):
  raw = synthetic_detection.generate(str(tmp_path / 'raw'), num_videos=20, size=(64, 48),
                                     duration_sec=3.0, val_fraction=0.3, classes=CLASSES,
                                     progress=False)
  data = str(tmp_path / 'data')
  report = ava_prepare.prepare_ava(
      data, raw['video_dir'], raw['groundtruth'], raw['detections'], raw['excluded'],
      raw['label_map'], options=prepare.PrepareOptions(short_side=48),
      ava_options=ava_prepare.AvaOptions(max_boxes=4), verbose=False)
  assert report['summary']['num_skipped'] == 0
  config = ava_configs.synthetic_config(data, len(CLASSES), STEPS)
  workdir = str(tmp_path / 'work')
  trainer.train_and_evaluate(config, workdir)
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'train_metrics.jsonl'))]
  assert rows[-1]['step'] == STEPS and np.isfinite(rows[-1]['train/loss'])

  metrics = evaluator.run_eval_mode(config, workdir)
  files = ava_eval.split_files(data, 'validation')
  detections = os.path.join(workdir, 'detections.csv')
  official = ava_eval.evaluate_files(files['groundtruth'], detections, files['label_map'],
                                     files['excluded'])
  assert official['mAP'] == pytest.approx(metrics['mAP'], abs=1e-6)  # the CSV is the result
  constant = str(tmp_path / 'constant.csv')
  _constant_scores(detections, constant)
  baseline = ava_eval.evaluate_files(files['groundtruth'], constant, files['label_map'],
                                     files['excluded'])['mAP']
  print(f'frame mAP: tiny model {metrics["mAP"]:.3f}, constant scores {baseline:.3f}',
        file=sys.stderr)
  assert metrics['mAP'] > baseline + 0.1, (metrics['mAP'], baseline)

  export_dir = main_lib.export_checkpoint(config, workdir, str(tmp_path / 'export'))
  video = os.path.join(raw['video_dir'], 'syn_validation_019.mp4')
  png = str(tmp_path / 'keyframe.png')
  out = io.StringIO()
  assert predict.predict_files(export_dir, [video], 2, out=out, keyframe_sec=1.0, png=png) == 0
  lines = out.getvalue().strip().splitlines()
  assert lines[0].startswith(video + ': box 0 (0.000, 0.000, 1.000, 1.000):')
  assert all(name in lines[0] for name in CLASSES)
  assert lines[1] == f'{video}: drew {png}' and os.path.getsize(png) > 1000
