r"""Top-5 labels for video files, from an export directory.

  python -m avslowfast_jax.predict --model /tmp/qs_av/export video1.mp4 [video2.mp4 ...]

Each file goes through the evaluation preprocessing (decode as in
``data_pipelines.prepare``, then the ``num_test_clips x num_test_crops`` views
of ``data_pipelines.input_pipeline``), the exported model scores every view,
and the task aggregates the views as evaluation does. A file that cannot be
read is reported and skipped; the exit status is 1 if some file failed and 2
if none could be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

import ml_collections
import numpy as np
import tensorflow as tf

from avslowfast_jax import export, tasks
from data_pipelines import adapters, decode, errors, input_pipeline, shards
from data_pipelines.errors import UserError


def video_views(config, path: str, short_side: int):
  """All evaluation views of one file as a numpy batch (same ops as ``--mode eval``)."""
  video = decode.decode_video(path, fps=config.data.fps, short_side=short_side,
                              sample_rate=config.data.audio.sample_rate)
  item = adapters.VideoItem(path=path, labels=[0], split='predict',
                            video_id=os.path.basename(path))
  record = tf.constant(shards.serialize_example(video, item))
  views = [input_pipeline.make_eval_views(record, 0, clip, config)
           for clip in range(config.data.num_test_clips)]
  return {k: np.concatenate([v[k].numpy() for v in views]) for k in views[0]}


def predict_files(model_dir: str, paths: Sequence[str], k: int = 5, out=sys.stdout) -> int:
  """Prints the top-``k`` labels per file; returns the number of files that failed."""
  model = export.load(model_dir)
  if model.config is None:
    raise UserError(f'{model_dir}: the export has no config.json, which predict needs for the '
                    'preprocessing; export it with python -m avslowfast_jax.main --mode export')
  config = ml_collections.ConfigDict(model.config)
  task = tasks.get_task(config)
  short_side = model.signature.get('prepared_short_side') or config.data.test_short_side
  failed = 0
  for path in paths:
    try:
      views = video_views(config, path, short_side)
    except (decode.BadVideoError, OSError, ValueError) as e:
      print(f'{path}: cannot read this file: {e}', file=out)
      failed += 1
      continue
    scores = task.video_scores(model.scores({name: views[name] for name in model.input_names}))
    for line in task.describe(scores, model.label_map, k):
      print(f'{path}: {line}', file=out)
  return failed


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', required=True, help='export directory (--mode export)')
  parser.add_argument('--top_k', type=int, default=5)
  parser.add_argument('videos', nargs='+')
  args = parser.parse_args(argv)
  failed = predict_files(args.model, args.videos, args.top_k)
  if failed == len(args.videos):
    raise UserError(f'none of the {failed} files could be read')
  return 1 if failed else 0


if __name__ == '__main__':
  errors.run(main)
