r"""Top-5 labels for video files, from an export directory.

  python -m avslowfast_jax.predict --model /tmp/qs_av/export video1.mp4 [video2.mp4 ...]

  # a detection (AVA) model: the top actions of each box of a keyframe, drawn into a PNG
  python -m avslowfast_jax.predict --model /tmp/ava/export --boxes boxes.csv \
      --keyframe_sec 3.0 --png keyframe.png video.mp4

Each file goes through the evaluation preprocessing (decode as in
``data_pipelines.prepare``, then the ``num_test_clips x num_test_crops`` views
of ``data_pipelines.input_pipeline``, or a detection task's keyframe example),
the exported model scores every view, and the task aggregates the views as
evaluation does. ``--boxes``: normalised ``x1,y1,x2,y2`` rows (or AVA rows);
without it a detection model scores the whole frame as one box. A file that
cannot be read is reported and skipped; the exit status is 1 if some file
failed and 2 if none could be read.
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
from avslowfast_jax.metrics import ava_frame_map
from data_pipelines import adapters, decode, errors, input_pipeline, shards
from data_pipelines.errors import UserError


def video_views(config, path: str, short_side: int, video=None):
  """All evaluation views of one file as a numpy batch (same ops as ``--mode eval``)."""
  video = video or decode.decode_video(path, fps=config.data.fps, short_side=short_side,
                                       sample_rate=config.data.audio.sample_rate)
  item = adapters.VideoItem(path=path, labels=[0], split='predict',
                            video_id=os.path.basename(path))
  record = tf.constant(shards.serialize_example(video, item))
  views = [input_pipeline.make_eval_views(record, 0, clip, config)
           for clip in range(config.data.num_test_clips)]
  return {k: np.concatenate([v[k].numpy() for v in views]) for k in views[0]}


def png_path(png: str, video_path: str, several: bool) -> str:
  """``png``, or with several videos ``png``'s stem + ``_<video name>.png``."""
  if not several:
    return png
  stem = png[:-4] if png.endswith('.png') else png
  return f'{stem}_{os.path.splitext(os.path.basename(video_path))[0]}.png'


def predict_files(model_dir: str, paths: Sequence[str], k: int = 5, out=sys.stdout, *,
                  boxes_csv: Optional[str] = None, keyframe_sec: Optional[float] = None,
                  png: Optional[str] = None) -> int:
  """Prints the top-``k`` labels per file; returns the number of files that failed."""
  model = export.load(model_dir)
  if model.config is None:
    raise UserError(f'{model_dir}: the export has no config.json, which predict needs for the '
                    'preprocessing; export it with python -m avslowfast_jax.main --mode export')
  config = ml_collections.ConfigDict(model.config)
  task = tasks.get_task(config)
  if 'boxes' not in model.input_names:
    given = [flag for flag, value in (('--boxes', boxes_csv), ('--keyframe_sec', keyframe_sec),
                                      ('--png', png)) if value is not None]
    if given:
      raise UserError(f'{" and ".join(given)}: for a detection export (task \'ava\'); '
                      f'{model_dir} is a {task.name!r} export, which scores whole videos')
  short_side = model.signature.get('prepared_short_side') or config.data.test_short_side
  boxes = ava_frame_map.read_predict_boxes(boxes_csv) if boxes_csv else None
  failed = 0
  for path in paths:
    try:
      video = decode.decode_video(path, fps=config.data.fps, short_side=short_side,
                                  sample_rate=config.data.audio.sample_rate)
      views = task.predict_inputs(video, boxes, keyframe_sec)
      if views is None:
        views = video_views(config, path, short_side, video)
    except (decode.BadVideoError, OSError, ValueError) as e:
      print(f'{path}: cannot read this file: {e}', file=out)
      failed += 1
      continue
    scores = model.scores({name: views[name] for name in model.input_names})
    for line in task.predict_lines(scores, views, model.label_map, k):
      print(f'{path}: {line}', file=out)
    if png:
      target = png_path(png, path, len(paths) > 1)
      if task.plot_prediction(target, scores, views, model.label_map, config.data.mean,
                              config.data.std):
        print(f'{path}: drew {target}', file=out)
      else:
        print(f'{path}: --png draws detection predictions; task {task.name!r} has none',
              file=out)
  return failed


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', required=True, help='export directory (--mode export)')
  parser.add_argument('--top_k', type=int, default=5)
  parser.add_argument('--boxes', default=None,
                      help='detection: CSV of normalised x1,y1,x2,y2 rows (or AVA rows); '
                      'default: the whole frame as one box')
  parser.add_argument('--keyframe_sec', type=float, default=None,
                      help='detection: the keyframe second (default: the middle of the video)')
  parser.add_argument('--png', default=None,
                      help='detection: draw the keyframe with its boxes and top labels here')
  parser.add_argument('videos', nargs='+')
  args = parser.parse_args(argv)
  if args.top_k < 1:
    raise UserError(f'--top_k {args.top_k}: expected at least 1')
  failed = predict_files(args.model, args.videos, args.top_k, boxes_csv=args.boxes,
                         keyframe_sec=args.keyframe_sec, png=args.png)
  if failed == len(args.videos):
    raise UserError(f'none of the {failed} files could be read')
  return 1 if failed else 0


if __name__ == '__main__':
  errors.run(main)
