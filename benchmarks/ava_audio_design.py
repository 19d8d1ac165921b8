r"""The two audio designs of the AVA head on the built-in detection data: frame mAP each.

  python benchmarks/ava_audio_design.py --output_dir /tmp/ava_audio --steps 60

Writes the synthetic detection dataset (actions that need sight, sound or
both; data_pipelines/synthetic_detection.py), prepares it, and trains the tiny
AVSlowFast detection model twice from the same initialisation and data order:
``model.audio_pool5=True`` (the pooled audio feature appended to every box's
feature, as well as the laterals) and ``False`` (laterals only). Prints one
JSON object: the frame mAP@0.5 and the per-class AP of each variant on the
validation split, with the steps, classes and sizes used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from avslowfast_jax.evaluation import evaluator
from avslowfast_jax.train import trainer
from configs import ava as ava_configs
from data_pipelines import ava_prepare, errors, fs, prepare, synthetic_detection

CLASSES = ('left_right', 'up_down', 'whistle', 'hum')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--steps', type=int, default=60)
  parser.add_argument('--num_videos', type=int, default=24)
  args = parser.parse_args(argv)
  raw = synthetic_detection.generate(fs.join(args.output_dir, 'raw'), args.num_videos,
                                     size=(64, 48), duration_sec=3.0, val_fraction=0.3,
                                     classes=CLASSES, progress=False)
  data = fs.join(args.output_dir, 'data')
  ava_prepare.prepare_ava(data, raw['video_dir'], raw['groundtruth'], raw['detections'],
                          raw['excluded'], raw['label_map'],
                          options=prepare.PrepareOptions(short_side=48),
                          ava_options=ava_prepare.AvaOptions(max_boxes=4), verbose=False)
  result = {'classes': list(CLASSES), 'steps': args.steps, 'num_videos': args.num_videos}
  for name, pool5 in (('audio_pool5', True), ('laterals_only', False)):
    config = ava_configs.synthetic_config(data, len(CLASSES), args.steps, pool5)
    workdir = fs.join(args.output_dir, name)
    trainer.train_and_evaluate(config, workdir)
    metrics = evaluator.run_eval_mode(config, workdir)
    result[name] = {'mAP': round(float(metrics['mAP']), 4),
                    'AP': {k: None if v is None else round(float(v), 4)
                           for k, v in metrics['AP_per_class'].items()}}
  print(json.dumps(result))
  return result


if __name__ == '__main__':
  errors.run(main)
