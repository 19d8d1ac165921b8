r"""Top-5 labels for video files, from an export directory.

  python -m avslowfast_jax.predict --model /tmp/qs_av/export video1.mp4 [video2.mp4 ...]

Each file goes through the evaluation preprocessing (decode as in
``data_pipelines.prepare``, then the ``num_test_clips x num_test_crops`` views
of ``data_pipelines.input_pipeline``), the exported model scores every view,
and the view scores are aggregated as in evaluation. A file that cannot be
read is reported and skipped; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

import numpy as np


def _config_from_export(path: str):
  import ml_collections  # pylint: disable=g-import-not-at-top
  with open(os.path.join(path, 'config.json')) as f:
    return ml_collections.ConfigDict(json.load(f))


def video_views(config, path: str, short_side: int):
  """All evaluation views of one file as a numpy batch (same ops as ``--mode eval``)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from data_pipelines import adapters, decode, input_pipeline, shards  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  video = decode.decode_video(path, fps=config.data.fps, short_side=short_side,
                              sample_rate=config.data.audio.sample_rate)
  item = adapters.VideoItem(path=path, labels=[0], split='predict',
                            video_id=os.path.basename(path))
  record = tf.constant(shards.serialize_example(video, item))
  views = [input_pipeline.make_eval_views(record, 0, clip, config)
           for clip in range(config.data.num_test_clips)]
  return {k: np.concatenate([v[k].numpy() for v in views]) for k in views[0]}


def top_labels(scores: np.ndarray, names, k: int = 5):
  order = np.argsort(-scores)[:k]
  return [(names[i] if names and i < len(names) else str(i), float(scores[i])) for i in order]


def predict_files(model_dir: str, paths: Sequence[str], k: int = 5, out=sys.stdout) -> int:
  """Prints the top-``k`` labels per file; returns the number of files that failed."""
  from avslowfast_jax import export  # pylint: disable=g-import-not-at-top
  from data_pipelines import decode  # pylint: disable=g-import-not-at-top
  model = export.load(model_dir)
  config = _config_from_export(model_dir)
  short_side = model.signature.get('prepared_short_side') or config.data.test_short_side
  aggregate = np.max if config.eval.aggregate == 'max' else np.mean
  failed = 0
  for path in paths:
    try:
      views = video_views(config, path, short_side)
    except (decode.BadVideoError, OSError, ValueError) as e:
      print(f'{path}: cannot read this file: {e}', file=out)
      failed += 1
      continue
    scores = model.scores({name: views[name] for name in model.input_names})
    if isinstance(scores, dict):  # verb / noun heads
      for head, s in scores.items():
        names = (model.label_map or {}).get(head) if isinstance(model.label_map, dict) else None
        line = ', '.join(f'{n} {p:.3f}' for n, p in top_labels(aggregate(s, axis=0), names, k))
        print(f'{path} [{head}]: {line}', file=out)
    else:
      line = ', '.join(f'{n} {p:.3f}' for n, p in
                       top_labels(aggregate(scores, axis=0), model.label_map, k))
      print(f'{path}: {line}', file=out)
  return failed


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', required=True, help='export directory (--mode export)')
  parser.add_argument('--top_k', type=int, default=5)
  parser.add_argument('videos', nargs='+')
  args = parser.parse_args(argv)
  return 1 if predict_files(args.model, args.videos, args.top_k) else 0


if __name__ == '__main__':
  sys.exit(main())
