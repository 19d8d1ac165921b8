r"""``python -m data_pipelines.prepare --dataset ava``: AVA videos and boxes into segment shards.

  python -m data_pipelines.prepare --dataset ava --output_dir /data/ava_shards \
      --video_dir /data/ava/videos_15min \
      --ava_groundtruth train=ava_train_v2.2.csv validation=ava_val_v2.2.csv \
      --ava_detections train=ava_train_predicted_boxes.csv \
                       validation=ava_val_predicted_boxes.csv \
      --ava_excluded validation=ava_val_excluded_timestamps_v2.2.csv \
      --label_map ava_action_list_v2.2_for_activitynet_2019.pbtxt --num_workers 16

Segment design. Every video is decoded once (frames resampled to ``--fps``,
resized to ``--short_side``, JPEG-encoded; audio mono int16), then cut into
segments of ``--ava_segment_sec`` seconds of keyframes plus ``--ava_margin_sec``
of frames and audio on each side, one ``tf.train.Example`` per segment with
the boxes of its keyframes. A training or evaluation clip centred on a
keyframe is sampled from its segment's frames, as a Kinetics clip is sampled
from its video's. The margins are the only stored overlap: with the defaults
(8 s, 1.1 s; a 64-frame clip at 30 fps reaches 1.07 s before its keyframe) a
segment holds 10.2 s of frames for 8 keyframes, 1.28x the video's own length,
and each clip reads one ~10 s record, as a Kinetics clip does. One record per
15-minute video would make every clip read ~27,000 frames; one record per
keyframe would store every frame about twice (a 64-frame clip per 30-frame
second). A larger segment stores less overlap but reads more per clip.

Boxes: ground-truth rows of the same keyframe and coordinates form one box
with several actions; detected boxes with a score below
``--detection_score_threshold`` are not stored; at most ``--max_boxes`` boxes
of each kind are kept per keyframe (the detections with the highest scores,
the ground-truth boxes in file order) and the rest are counted as dropped.
Coordinates outside [0, 1] are clipped and counted. A detected box gets the
actions of the ground-truth box it overlaps most if their IoU is >= 0.5 (for
training on detected boxes).

Split names pair the files of ``--ava_groundtruth``, ``--ava_detections`` and
``--ava_excluded``; both box flags must name the same splits (``SPLIT=none``
for a file a split does not have), :func:`check_splits`. A video file far
longer than AVA's 901 s cut is taken for the whole movie and its seconds
900-1801 are read by time (:func:`cut_span`).

Also written under ``<output_dir>/ava/``: ``label_map.pbtxt``,
``<split>_groundtruth.csv`` (the ground-truth file as given, its lines of the
prepared videos byte for byte: what the official evaluation reads, not the
merged and clipped boxes training uses), ``<split>_excluded_timestamps.csv``,
``<split>_videos.json`` (video ids; position = ``video_index`` of the
batches) and ``<split>_index.json`` (keyframes of every record, read by the
input pipeline). Shards, ``shards.json``, the TFDS metadata, resumability and
the report follow data_pipelines/prepare.py; both run their shards with
data_pipelines/shard_runner.py.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import time
from typing import Dict, List, Optional, Sequence

import av
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import adapters, ava_files, decode, fs, shard_runner, shards
from data_pipelines.errors import UserError
from data_pipelines.shard_runner import PrepareOptions

DEFAULT_MAX_BOXES = 16  # configs/ava.py's data.ava.max_boxes
CUT_DURATION_SEC = 901  # AVA's video files: seconds 900-1801 of the source
# A file longer than the cut by more than this is taken for the whole movie (cut_span).
UNCUT_TOLERANCE_SEC = 60


@dataclasses.dataclass
class AvaOptions:
  """How keyframes are grouped and boxes kept (recorded in ``shards.json``)."""
  segment_sec: int = 8
  margin_sec: float = 1.1
  max_boxes: int = DEFAULT_MAX_BOXES
  detection_score_threshold: float = 0.8
  video_start_sec: float = ava_files.VIDEO_START_SEC


@dataclasses.dataclass
class Keyframe:
  sec: int
  gt: List[ava_files.Box]
  det: List[ava_files.Box]


@dataclasses.dataclass
class AvaVideo:
  video_id: str
  path: str
  index: int  # video_index in the split
  keyframes: List[Keyframe]


@dataclasses.dataclass
class AvaShardTask:
  output_dir: str
  name: str
  split: str
  index: int
  count: int
  videos: List[AvaVideo]
  options: PrepareOptions
  ava: AvaOptions


# ------------------------------------------------------------------ records
def _box_features(prefix: str, keyframes: Sequence[Keyframe], kind: str) -> dict:
  coords, owner, scores, label_box, label_action = [], [], [], [], []
  for k, keyframe in enumerate(keyframes):
    for box in getattr(keyframe, kind):
      for action in box.actions:
        label_box.append(len(owner))
        label_action.append(action)
      coords.extend(box.coords)
      owner.append(k)
      scores.append(box.score)
  return {f'{prefix}_boxes': shards.floats_feature(coords), f'{prefix}_keyframe': shards.ints_feature(owner),
          f'{prefix}_scores': shards.floats_feature(scores), f'{prefix}_label_box': shards.ints_feature(label_box),
          f'{prefix}_label_action': shards.ints_feature(label_action)}


def serialize_segment(video: AvaVideo, jpegs, height, width, fps, audio, sample_rate,
                      audio_start_sec, keyframes, keyframe_frames, start_sec) -> bytes:
  """Serialized ``tf.train.Example`` of one segment (features: :func:`parse_spec`)."""
  pcm = b'' if audio is None else audio.astype('<i2').tobytes()
  feature = {
      'video_id': shards.bytes_feature([video.video_id.encode()]),
      'source_path': shards.bytes_feature([video.path.encode()]),
      'video_index': shards.ints_feature([video.index]),
      'frames': shards.bytes_feature(jpegs),
      'num_frames': shards.ints_feature([len(jpegs)]),
      'height': shards.ints_feature([height]),
      'width': shards.ints_feature([width]),
      'fps': shards.floats_feature([fps]),
      'audio': shards.bytes_feature([pcm]),
      'audio_num_samples': shards.ints_feature([0 if audio is None else len(audio)]),
      'audio_sample_rate': shards.ints_feature([sample_rate]),
      'audio_start_sec': shards.floats_feature([audio_start_sec]),
      'has_audio': shards.ints_feature([audio is not None]),
      'start_sec': shards.floats_feature([start_sec]),
      'keyframe_sec': shards.ints_feature([k.sec for k in keyframes]),
      'keyframe_frame': shards.ints_feature(keyframe_frames),
  }
  feature.update(_box_features('gt', keyframes, 'gt'))
  feature.update(_box_features('det', keyframes, 'det'))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_SCALARS = {'video_id': tf.string, 'video_index': tf.int64, 'num_frames': tf.int64,
            'height': tf.int64, 'width': tf.int64, 'fps': tf.float32,
            'audio': tf.string, 'audio_num_samples': tf.int64, 'audio_sample_rate': tf.int64,
            'audio_start_sec': tf.float32, 'has_audio': tf.int64, 'start_sec': tf.float32}
_LISTS = {'frames': tf.string, 'keyframe_sec': tf.int64, 'keyframe_frame': tf.int64,
          **{f'{p}_{k}': d for p in ('gt', 'det')
             for k, d in (('boxes', tf.float32), ('keyframe', tf.int64), ('scores', tf.float32),
                          ('label_box', tf.int64), ('label_action', tf.int64))}}


def parse_spec():
  """``tf.io.parse_single_example`` spec of a segment record.

  ``frames``: one JPEG per frame (frame i at ``start_sec + i / fps`` s of the
  cut video); ``keyframe_sec`` / ``keyframe_frame``: each keyframe's AVA
  timestamp and its frame in the segment; ``gt_*`` / ``det_*``: boxes
  (``*_boxes`` flat ``x1, y1, x2, y2`` normalised), the keyframe each belongs
  to, detector scores (1 for ground truth), and (box, action id) pairs.
  """
  spec = {k: tf.io.FixedLenFeature([], d, default_value=b'' if d == tf.string else None)
          for k, d in _SCALARS.items()}
  spec.update({k: tf.io.RaggedFeature(d) for k, d in _LISTS.items()})
  return spec


def tfds_features():
  """The same features as a ``tfds.features.FeaturesDict`` (for the TFDS metadata)."""
  numpy_of = {tf.string: tf.string, tf.int64: np.int64, tf.float32: np.float32}
  features = {'source_path': tfds.features.Tensor(shape=(), dtype=tf.string)}
  features.update({k: tfds.features.Tensor(shape=(), dtype=numpy_of[d])
                   for k, d in _SCALARS.items()})
  features.update({k: tfds.features.Tensor(shape=(None,), dtype=numpy_of[d])
                   for k, d in _LISTS.items()})
  return tfds.features.FeaturesDict(features)


# ------------------------------------------------------------------- worker
def _segments(frames: Sequence[int], segment_sec: int, fps: float):
  """Groups keyframe positions (sorted) into segments of ``segment_sec`` seconds."""
  groups = collections.OrderedDict()
  first = frames[0] if frames else 0
  for i, frame in enumerate(frames):
    groups.setdefault(int((frame - first) // (segment_sec * fps)), []).append(i)
  return list(groups.values())


def container_duration(path: str) -> Optional[float]:
  """Seconds the container says ``path`` lasts, or None when it does not say (or cannot be
  opened: decoding then names the problem)."""
  try:
    with contextlib.ExitStack() as stack:
      source = stack.enter_context(fs.open(path, 'rb')) if fs.is_remote(path) else path
      container = stack.enter_context(av.open(source, metadata_errors='ignore'))
      if container.duration:
        return container.duration / av.time_base
      for stream in container.streams.video:
        if stream.duration and stream.time_base:
          return float(stream.duration * stream.time_base)
  except Exception:  # pylint: disable=broad-except (PyAV raises FFmpeg's whole family)
    return None
  return None


def cut_span(path: str, video_start_sec: float):
  """``(start_sec, end_sec, note)`` of the part of ``path`` that holds AVA's 15-minute cut.

  AVA's video files are cut to seconds ``video_start_sec`` (900) to
  ``video_start_sec + 901`` of the source, so keyframe ``t`` is at ``t -
  900`` s of the file. A file far longer than 901 s is not such a cut but the
  whole movie, whose second ``t`` is keyframe ``t``: its seconds 900-1801 are
  decoded by time (``start_sec``/``end_sec``, and ``note`` says so for the
  report), so that the frame arithmetic of a cut holds. ``(None, None, '')``
  for a cut (or a file whose length the container does not give);
  ``video_start_sec`` 0 (files whose time is the source's) is never cut. A
  movie that ends before ``video_start_sec`` is a ``BadVideoError``.
  """
  if video_start_sec <= 0:
    return None, None, ''
  duration = container_duration(path)
  if duration is None or duration <= CUT_DURATION_SEC + UNCUT_TOLERANCE_SEC:
    return None, None, ''
  if duration <= video_start_sec:
    raise decode.BadVideoError(
        f'{duration:.0f} s long: longer than AVA\'s {CUT_DURATION_SEC} s cut, so taken for the '
        f'whole movie, but it ends before second {video_start_sec:g} where the cut begins')
  end_sec = video_start_sec + CUT_DURATION_SEC
  return video_start_sec, end_sec, (
      f'the whole movie ({duration:.0f} s, not AVA\'s {CUT_DURATION_SEC} s cut): read seconds '
      f'{video_start_sec:g}-{end_sec:g} of it by time')


def process_ava_shard(task: AvaShardTask, progress_queue=None) -> dict:
  """Decodes the videos of one shard once each and writes their segments; returns the report.

  Never raises for a bad video: it is recorded with the reason and skipped.
  """
  o, a = task.options, task.ava
  records = []
  margin = int(math.ceil(a.margin_sec * o.fps))

  def write_segments(video, writer):
    start_sec, end_sec, note = cut_span(video.path, a.video_start_sec)
    decoded = decode.decode_video(video.path, fps=o.fps, short_side=o.short_side,
                                  jpeg_quality=o.jpeg_quality, sample_rate=o.sample_rate,
                                  start_sec=start_sec, end_sec=end_sec)
    if note:
      decoded.repairs.append(note)
    inside, outside = [], []
    for keyframe in video.keyframes:
      frame = int(round((keyframe.sec - a.video_start_sec) * o.fps))
      (inside if 0 <= frame < decoded.num_frames else outside).append((frame, keyframe))
    num_records = 0
    for group in _segments([f for f, _ in inside], a.segment_sec, o.fps):
      members = [inside[i] for i in group]
      begin = max(members[0][0] - margin, 0)
      end = min(members[-1][0] + margin + 1, decoded.num_frames)
      audio, audio_start = None, 0.0
      if decoded.audio is not None:
        sr = decoded.audio_sample_rate
        first = max(int(round((begin / o.fps - decoded.audio_start_sec) * sr)), 0)
        last = max(int(round((end / o.fps - decoded.audio_start_sec) * sr)), first)
        audio = decoded.audio[first:last]
        audio_start = decoded.audio_start_sec + first / sr - begin / o.fps
      writer.write(serialize_segment(
          video, decoded.jpegs[begin:end], decoded.height, decoded.width, o.fps, audio,
          o.sample_rate, audio_start, [k for _, k in members],
          [f - begin for f, _ in members], begin / o.fps))
      num_records += 1
      records.append([video.index, decoded.height, decoded.width,
                      [[k.sec, len(k.gt), len(k.det), max([b.score for b in k.det] or [0])]
                       for _, k in members]])
    return dict(num_frames=decoded.num_frames, duration_sec=round(decoded.duration_sec, 3),
                has_audio=decoded.audio is not None, repairs=list(decoded.repairs),
                num_records=num_records, num_keyframes=len(inside),
                keyframes_outside_video=[k.sec for _, k in outside])

  final, entries = shard_runner.write_shard(task, task.videos, write_segments, progress_queue)
  return shard_runner.write_progress(task, final, len(records), entries, records=records)


# ----------------------------------------------------------------- planning
def _match_actions(det: ava_files.Box, gt_boxes: Sequence[ava_files.Box]) -> List[int]:
  best, best_iou = None, 0.5
  for box in gt_boxes:
    overlap = ava_files.iou(det.coords, box.coords)
    if overlap >= best_iou:
      best, best_iou = box, overlap
  return list(best.actions) if best is not None else []


def plan_split(gt_path: Optional[str], det_path: Optional[str], video_dir: str,
               videos_on_disk: Dict[str, str], options: AvaOptions, counts: dict):
  """``(videos, ground truth)`` of a split: its videos (sorted by id) with their keyframes
  and boxes, and the ground-truth ``ava_files.BoxFile``; fills ``counts``."""
  gt = ava_files.read_boxes(gt_path) if gt_path else ava_files.BoxFile(boxes={})
  det = (ava_files.read_boxes(det_path, detections=True, min_score=options.detection_score_threshold)
         if det_path else ava_files.BoxFile(boxes={}))
  counts.update(gt_rows=gt.num_rows, gt_boxes_clipped=gt.num_clipped,
                detection_rows=det.num_rows, detections_clipped=det.num_clipped,
                detections_below_threshold=det.num_below_threshold,
                gt_boxes=0, detections=0, gt_boxes_dropped_above_max=0,
                detections_dropped_above_max=0)
  by_video = collections.defaultdict(dict)
  for key in set(gt.boxes) | set(det.boxes):
    gt_boxes = gt.boxes.get(key, [])
    det_boxes = sorted(det.boxes.get(key, []), key=lambda b: -b.score)
    for box in det_boxes:
      if not box.actions:
        box.actions = _match_actions(box, gt_boxes)
    counts['gt_boxes'] += len(gt_boxes)
    counts['detections'] += len(det_boxes)
    counts['gt_boxes_dropped_above_max'] += max(len(gt_boxes) - options.max_boxes, 0)
    counts['detections_dropped_above_max'] += max(len(det_boxes) - options.max_boxes, 0)
    by_video[key[0]][key[1]] = Keyframe(key[1], gt_boxes[:options.max_boxes],
                                        det_boxes[:options.max_boxes])
  videos = []
  for number, video_id in enumerate(sorted(by_video)):
    keyframes = [by_video[video_id][s] for s in sorted(by_video[video_id])]
    path = adapters.resolve_video(videos_on_disk, video_dir, video_id)
    videos.append(AvaVideo(video_id, path, number, keyframes))
  counts['videos'] = len(videos)
  counts['keyframes'] = sum(len(v.keyframes) for v in videos)
  return videos, gt


def split_paths(flag: str, values: Sequence[str]) -> Dict[str, Optional[str]]:
  """``{split: path}`` of ``SPLIT=PATH`` values; ``SPLIT=none`` names a split without
  such a file (``None``)."""
  out = {}
  for value in values or ():
    split, sep, path = value.partition('=')
    if not sep or not split or not path:
      raise UserError(f'{flag} {value!r}: expected SPLIT=PATH, e.g. train=ava_train_v2.2.csv '
                      '(or SPLIT=none for a split without such a file)')
    if split in out:
      raise UserError(f'{flag} names split {split!r} twice')
    if path.lower() == 'none':
      out[split] = None
      continue
    if not fs.exists(path):
      raise UserError(f'{flag} {value}: no such file {path}')
    out[split] = path
  return out


def check_splits(groundtruth: Dict[str, Optional[str]], detections: Dict[str, Optional[str]],
                 excluded: Dict[str, Optional[str]]) -> None:
  """A ``UserError`` (one line) where the flags disagree on the split names.

  With both ``--ava_groundtruth`` and ``--ava_detections``, every split must be
  named by both (``SPLIT=none`` where a split has no such file: a test split
  without ground truth, a training split without detected boxes), so that
  ``validation=`` in one and ``val=`` in the other is an error, not two splits.
  ``--ava_excluded`` may name only splits with a ground-truth file.
  """
  names = lambda splits: ', '.join(repr(s) for s in sorted(splits)) or 'none'
  if groundtruth and detections:
    only_gt = sorted(set(groundtruth) - set(detections))
    only_det = sorted(set(detections) - set(groundtruth))
    if only_gt or only_det:
      parts = []
      if only_gt:
        parts.append(f'--ava_groundtruth names {names(only_gt)}, which --ava_detections does not')
      if only_det:
        parts.append(f'--ava_detections names {names(only_det)}, which --ava_groundtruth does not')
      raise UserError(f'split names differ: {"; ".join(parts)} (--ava_groundtruth: '
                      f'{names(groundtruth)}; --ava_detections: {names(detections)}); name '
                      'every split in both, with SPLIT=none for a file a split does not have')
  with_gt = {s for s, p in groundtruth.items() if p}
  stray = sorted(set(excluded) - with_gt)
  if stray:
    raise UserError(f'--ava_excluded names {names(stray)}, but --ava_groundtruth gives a file '
                    f'only for {names(with_gt)}: the excluded timestamps apply to a split\'s '
                    'ground truth')


def prepare_ava(output_dir: str, video_dir: str, groundtruth: Dict[str, Optional[str]],
                detections: Dict[str, Optional[str]], excluded: Dict[str, Optional[str]],
                label_map: str, *,
                name: str = 'ava', options: Optional[PrepareOptions] = None,
                ava_options: Optional[AvaOptions] = None, num_workers: int = 0,
                videos_per_shard: int = 1, runner: str = 'local',
                beam_options: Sequence[str] = (), verbose: bool = True) -> dict:
  """Prepares AVA (or AVA-format) videos and boxes into ``output_dir``; returns the report.

  ``groundtruth`` / ``detections`` / ``excluded`` map split names to CSVs (``None``: the
  split has no such file); the names must agree (:func:`check_splits`). Resumable like
  ``data_pipelines.prepare.prepare``.
  """
  options = options or PrepareOptions()
  ava_options = ava_options or AvaOptions()
  if not fs.isdir(video_dir):
    raise UserError(f'--video_dir {video_dir}: no such folder of videos')
  check_splits(groundtruth, detections, excluded)
  labels = ava_files.read_label_map(label_map)
  excluded_keys = {s: ava_files.read_excluded(p) for s, p in excluded.items() if p}
  splits = sorted(set(groundtruth) | set(detections))
  if not splits:
    raise UserError('--dataset ava needs --ava_groundtruth and/or --ava_detections SPLIT=CSV')
  videos_on_disk = adapters.index_videos(video_dir)
  plans, counts, ground_truth = {}, {}, {}
  for split in splits:
    counts[split] = {}
    plans[split], ground_truth[split] = plan_split(
        groundtruth.get(split), detections.get(split), video_dir, videos_on_disk, ava_options,
        counts[split])
  fs.makedirs(fs.join(output_dir, '_progress'))
  tasks = []
  for split in splits:
    videos = plans[split]
    count = max(1, math.ceil(len(videos) / videos_per_shard))
    bounds = [round(i * len(videos) / count) for i in range(count + 1)]
    tasks += [AvaShardTask(output_dir, name, split, i, count, videos[bounds[i]:bounds[i + 1]],
                           options, ava_options) for i in range(count)]
  todo = shard_runner.pending(tasks, output_dir)
  start = time.time()
  shard_runner.run_shards(todo, process_ava_shard, runner=runner, num_workers=num_workers,
                          num_items=sum(len(t.videos) for t in todo), beam_options=beam_options)
  report = finalize(output_dir, name, tasks, labels, excluded_keys, ground_truth, counts, options,
                    ava_options, time.time() - start, groundtruth_paths=groundtruth)
  if verbose:
    _print_report(report, output_dir)
  return report


def groundtruth_of_videos(path: Optional[str], videos) -> tuple:
  """``(bytes, rows left out)``: the lines of the ground-truth CSV ``path`` whose video is
  in ``videos``, byte for byte and in file order (the whole file, unchanged, when every
  video is there); ``(b'', 0)`` without a file.

  Evaluation reads this, not the merged boxes preparation trains on: the official
  evaluator counts every row (a duplicated row is a second ground-truth box that no
  detection can match, an out-of-frame corner is not clipped).
  """
  if not path:
    return b'', 0
  data = fs.read_bytes(path)
  lines = data.splitlines(keepends=True)
  kept = [line for line in lines if not line.strip()
          or line.split(b',', 1)[0].strip().decode('utf-8', 'replace') in videos]
  left_out = len(lines) - len(kept)
  return (b''.join(kept) if left_out else data), left_out


def finalize(output_dir, name, tasks, labels, excluded_keys, ground_truth, counts, options,
             ava_options, elapsed_sec, groundtruth_paths=None) -> dict:
  """Writes shards.json, the TFDS metadata, the ``ava/`` files and ``prepare_report.json``."""
  groundtruth_paths = groundtruth_paths or {}
  reports = [shards.read_json(shard_runner.progress_path(output_dir, t.split, t.index))
             for t in tasks]
  reports.sort(key=lambda r: (r['split'], r['shard']))
  splits = collections.OrderedDict()
  index = collections.defaultdict(list)
  for report in reports:
    entry = splits.setdefault(report['split'], {'files': [], 'lengths': [], 'num_bytes': 0})
    entry['files'].append(report['file'])
    entry['lengths'].append(report['num_examples'])
    entry['num_bytes'] += report['num_bytes']
    index[report['split']].append(report['records'])
  ava_dir = fs.join(output_dir, 'ava')
  fs.makedirs(ava_dir)
  label_ids = [i for i, _ in labels]
  max_id = max(label_ids + [a for gt in ground_truth.values() for boxes in gt.boxes.values()
                            for b in boxes for a in b.actions])
  names = dict(labels)
  class_names = [names.get(i, f'action_{i}') for i in range(1, max_id + 1)]
  fs.write_text(fs.join(ava_dir, 'label_map.pbtxt'), ava_files.format_label_map(labels))
  skipped, per_split = [], {}
  for split, entry in splits.items():
    entries = [e for r in reports if r['split'] == split for e in r['entries']]
    written = {e['video_id'] for e in entries if e['status'] == 'written'}
    video_ids = sorted({e['video_id'] for e in entries})
    fs.write_json(fs.join(ava_dir, f'{split}_videos.json'), video_ids)
    fs.write_json(fs.join(ava_dir, f'{split}_index.json'), {'shards': index[split]}, indent=None)
    gt_bytes, gt_rows_left_out = groundtruth_of_videos(groundtruth_paths.get(split), written)
    fs.write_bytes(fs.join(ava_dir, f'{split}_groundtruth.csv'), gt_bytes)
    if split in excluded_keys:
      fs.write_text(fs.join(ava_dir, f'{split}_excluded_timestamps.csv'),
                    ava_files.format_excluded_csv(excluded_keys[split]))
    records = [r for shard in index[split] for r in shard]
    keyframes = [k for r in records for k in r[3]]
    c = dict(counts[split])
    c.update(videos_written=len(written), videos_skipped=len(video_ids) - len(written),
             gt_rows_of_skipped_videos=gt_rows_left_out,
             records=len(records), keyframes_written=len(keyframes),
             keyframes_with_gt=sum(k[1] > 0 for k in keyframes),
             keyframes_outside_video=sum(len(e.get('keyframes_outside_video', []))
                                         for e in entries),
             keyframes_of_skipped_videos=sum(len(v.keyframes) for t in tasks
                                             if t.split == split for v in t.videos
                                             if v.video_id not in written))
    per_split[split] = c
    skipped += [{k: e[k] for k in ('path', 'video_id', 'split', 'reason')}
                for e in entries if e['status'] == 'skipped']
  entries = [e for r in reports for e in r['entries']]
  repaired = [{k: e[k] for k in ('path', 'video_id', 'split', 'repairs')}
              for e in entries if e['status'] == 'written' and e['repairs']]
  summary = {
      'num_inputs': len(entries),
      'num_written': sum(e['status'] == 'written' for e in entries),
      'num_skipped': len(skipped),
      'num_repaired': len(repaired),
      'num_without_audio': sum(e['status'] == 'written' and not e['has_audio'] for e in entries),
      'num_examples': {s: v['keyframes_with_gt'] for s, v in per_split.items()},
      'num_records': {s: sum(v['lengths']) for s, v in splits.items()},
      'elapsed_sec': round(elapsed_sec, 1),
  }
  report = {'summary': summary, 'ava': per_split, 'max_boxes': ava_options.max_boxes,
            'skipped': skipped, 'repaired': repaired,
            'options': dataclasses.asdict(options), 'ava_options': dataclasses.asdict(ava_options)}
  shards.write_json_atomic(fs.join(output_dir, 'prepare_report.json'), report)
  shards.write_json_atomic(fs.join(output_dir, 'label_map.json'),
                           {'labels': class_names, 'nouns': []})
  meta = {'format_version': shards.FORMAT_VERSION, 'name': name, 'fps': options.fps,
          'short_side': options.short_side, 'audio_sample_rate': options.sample_rate,
          'splits': splits,
          'ava': {**dataclasses.asdict(ava_options),
                  'margin_frames': int(math.ceil(ava_options.margin_sec * options.fps)),
                  'num_keyframes': {s: v['keyframes_written'] for s, v in per_split.items()},
                  'num_keyframes_with_gt': {s: v['keyframes_with_gt']
                                            for s, v in per_split.items()}}}
  shards.write_json_atomic(fs.join(output_dir, 'shards.json'), meta)
  shards.write_tfds_metadata(output_dir, name, {s: v['lengths'] for s, v in splits.items()},
                             {s: v['num_bytes'] for s, v in splits.items()},
                             description=f'AVSlowFast prepared AVA segments ({name})',
                             features=tfds_features())
  return report


def _print_report(report: dict, output_dir: str) -> None:
  s = report['summary']
  print(f"prepared {s['num_written']} of {s['num_inputs']} videos into {output_dir}; "
        f"skipped {s['num_skipped']}, repaired {s['num_repaired']} "
        f"({s['num_without_audio']} without audio)", flush=True)
  for split, c in report['ava'].items():
    print(f"  {split}: {c['keyframes_written']} keyframes ({c['keyframes_with_gt']} with ground "
          f"truth) in {c['records']} records; {c['gt_boxes']} ground-truth boxes "
          f"({c['gt_boxes_clipped']} clipped to the frame, {c['gt_boxes_dropped_above_max']} "
          f"dropped above the maximum of {report['max_boxes']} per keyframe); "
          f"{c['detections']} detected boxes >= "
          f"{report['ava_options']['detection_score_threshold']}"
          f" ({c['detections_clipped']} clipped, {c['detections_dropped_above_max']} dropped "
          f"above the maximum, {c['detections_below_threshold']} rows below the threshold); "
          f"{c['keyframes_outside_video']} keyframes outside their video; "
          f"{c['keyframes_of_skipped_videos']} keyframes of skipped videos")
  for e in report['skipped']:
    print(f"  skipped {e['path']}: {e['reason']}")
  for e in report['repaired']:
    print(f"  repaired {e['path']}: {'; '.join(e['repairs'])}")
  print(f"report: {fs.join(output_dir, 'prepare_report.json')}")


def main_from_args(args) -> dict:
  """``prepare --dataset ava`` with the parsed arguments of data_pipelines/prepare.py."""
  if not args.label_map:
    raise UserError('--dataset ava needs --label_map (the action list .pbtxt)')
  groundtruth = split_paths('--ava_groundtruth', args.ava_groundtruth)
  detections = split_paths('--ava_detections', args.ava_detections)
  excluded = split_paths('--ava_excluded', args.ava_excluded)
  options = PrepareOptions(fps=args.fps, short_side=args.short_side,
                           jpeg_quality=args.jpeg_quality, sample_rate=args.sample_rate,
                           min_frames=args.min_frames)
  ava_options = AvaOptions(segment_sec=args.ava_segment_sec, margin_sec=args.ava_margin_sec,
                           max_boxes=args.max_boxes,
                           detection_score_threshold=args.detection_score_threshold,
                           video_start_sec=args.ava_video_start_sec)
  report = prepare_ava(args.output_dir, args.video_dir, groundtruth, detections, excluded,
                       args.label_map, name=args.name or 'ava', options=options,
                       ava_options=ava_options, num_workers=args.num_workers,
                       videos_per_shard=args.videos_per_shard or 1, runner=args.runner,
                       beam_options=args.beam_options)
  if not report['summary']['num_written']:
    reasons = sorted({e['reason'] for e in report['skipped']})
    raise UserError(f"none of the {report['summary']['num_inputs']} videos could be prepared "
                    f"(reasons: {'; '.join(reasons[:3])}); see "
                    f"{fs.join(args.output_dir, 'prepare_report.json')}")
  return report
