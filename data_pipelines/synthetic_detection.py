"""The built-in detection dataset: AVA-format files of moving "actors" whose actions need
sight, sound, or both.

``python -m data_pipelines.synthetic --detection --output_dir D`` writes real
mp4 files (H.264 + AAC mono, through PyAV) and AVA's annotation files for
them, ready for ``python -m data_pipelines.prepare --dataset ava``:

  videos/<video_id>.mp4
  annotations/ava_<split>.csv                      ground truth (one row per box and action)
  annotations/ava_<split>_predicted_boxes.csv      "detected" boxes with scores
  annotations/ava_validation_excluded_timestamps.csv
  annotations/label_map.pbtxt
  detection_classes.json                           classes and settings

Every video shows one to three actors: boxes of a solid body colour that
drift across the frame, each in its own lane (so boxes do not overlap), each
doing one action for the whole video. The action is drawn inside the box with
the patterns of the classification dataset (data_pipelines/synthetic.py, drawn by
data_pipelines/synthetic_scenes.py):

* visual actions (``left_right``, ``up_down``, ``rotating``): bars inside the
  box slide along x, along y, or spin; they make no sound;
* audio actions (``whistle``, ``hum``, ``noise_bursts``): still disks inside
  the box; the soundtrack carries the action;
* audiovisual actions (``click_in_sync``, ``click_out_of_sync``): squares
  that swell periodically and a click that coincides with the swell or falls
  half a period away.

At most one actor per video makes a sound (an audio or audiovisual action), so
the soundtrack names the action of the one box that shows disks or squares;
with no such actor the soundtrack is ambient noise drawn independently of the
actions. A still frame tells bars from disks from squares, but only motion
tells ``left_right`` from ``up_down``, and only sound tells ``whistle`` from
``hum``.

Keyframes are the whole seconds from 1 s to the last whole second before the
end of the video; their timestamps follow AVA's convention that a cut video
starts at second 900 (keyframe ``t`` is shown at ``t - 900`` s of the file).
The "detected" boxes are the ground-truth boxes with each coordinate jittered
by a few percent of the box size and a score in [0.82, 1); some keyframes also
get a false box with a score below 0.8 (dropped at the 0.8 threshold) or,
rarely, above it. Jittered boxes can reach outside the frame: preparation
clips and counts them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from data_pipelines import ava_files, fs
from data_pipelines import synthetic_scenes as scenes
from data_pipelines.errors import UserError
from data_pipelines.video_io import write_video

DEFAULT_CLASSES = ('left_right', 'up_down', 'rotating', 'whistle', 'hum', 'noise_bursts',
                   'click_in_sync', 'click_out_of_sync')
_SOUND_MODALITIES = ('audio', 'audiovisual')


@dataclasses.dataclass
class Actor:
  """One actor of a video: its action and where its box is at every frame (pixels)."""
  action: str
  width: int
  height: int
  x: np.ndarray  # [T] left edge (float pixels)
  y: np.ndarray  # [T] top edge


def _modality(name: str) -> str:
  return scenes.CLASSES_BY_NAME[name].modality


def _actions(rng: np.random.Generator, classes: Sequence[str], count: int) -> List[str]:
  """``count`` actions; at most one of them makes a sound."""
  silent = [c for c in classes if _modality(c) == 'visual']
  chosen, sounding = [], False
  for _ in range(count):
    options = list(classes) if not sounding or not silent else silent
    if sounding and not silent:  # only sounding classes asked for: one actor
      break
    name = options[rng.integers(len(options))]
    sounding |= _modality(name) in _SOUND_MODALITIES
    chosen.append(name)
  return chosen


def _place_actors(rng, actions, num_frames, fps, width, height) -> List[Actor]:
  """Boxes in equal vertical lanes, each drifting inside its lane for the whole video."""
  lanes = len(actions)
  lane = width / lanes
  times = np.arange(num_frames) / fps
  duration = max(times[-1], 1e-6)
  actors = []
  for i, action in enumerate(actions):
    box_w = int(round(min(rng.uniform(0.22, 0.3) * width, 0.9 * lane)))
    box_h = int(round(rng.uniform(0.45, 0.65) * height))
    # Start and end anywhere the box fits in its lane (x) or the frame (y).
    x_lo, x_hi = i * lane, (i + 1) * lane - box_w
    x0, x1 = rng.uniform(x_lo, x_hi, 2)
    y0, y1 = rng.uniform(0, height - box_h, 2)
    actors.append(Actor(action, box_w, box_h, x0 + (x1 - x0) * times / duration,
                        y0 + (y1 - y0) * times / duration))
  return actors


def _pattern(rng, action, times, box_h, box_w, flash):
  """Coverage ``[T, box_h, box_w]`` of the action's pattern inside the box.

  Drawn at half resolution and doubled: a box holds one or two large shapes
  rather than a fine texture, which a tiny network at low resolution can see.
  """
  modality = _modality(action)
  h, w = -(-box_h // 2), -(-box_w // 2)

  if modality == 'visual':
    cover = scenes.bar_field(rng, action, times, h, w)
  elif modality == 'audio':
    cover = scenes.disk_field(rng, times, h, w)
  else:
    cover = scenes.square_field(rng, times, h, w, flash)
  return cover.repeat(2, axis=1).repeat(2, axis=2)[:, :box_h, :box_w]


def _sound(rng, action: Optional[str], t, sr, onsets):
  """The soundtrack: the sound of the one sounding actor's ``action``, else ambient noise."""
  if action is None:
    return scenes.ambient(rng, t, sr)
  if action == 'click_in_sync':
    return scenes.clicks(rng, t, sr, onsets)
  if action == 'click_out_of_sync':
    period = onsets[1] - onsets[0]
    return scenes.clicks(rng, t, sr, onsets + period / 2)
  return scenes.CLASS_SOUNDS[action](rng, t, sr)


def render_video(rng: np.random.Generator, classes: Sequence[str], *,
                 size: Tuple[int, int] = (128, 96), duration_sec: float = 4.0, fps: int = 30,
                 sample_rate: int = 16000):
  """One video in memory: ``(frames uint8 [T, H, W, 3], audio float32 [S], actors)``."""
  width, height = size
  num_frames = int(round(duration_sec * fps))
  num_samples = int(round(duration_sec * sample_rate))
  times = np.arange(num_frames) / fps
  t = np.arange(num_samples) / sample_rate
  actions = _actions(rng, classes, int(rng.integers(1, 4)))
  actors = _place_actors(rng, actions, num_frames, fps, width, height)
  frames, _ = scenes.scene(rng, num_frames, height, width)
  # Audiovisual events: period and phase drawn the same way for both classes.
  period = rng.uniform(*scenes.AV_PERIOD_SEC)
  onsets = rng.uniform(0.0, period) + period * np.arange(-2, int(duration_sec / period) + 2)
  flash = scenes.flash_envelope(times, onsets)
  sounding = None
  for actor in actors:
    body = scenes.random_colour(rng, (0.0, 0.4), (0.15, 0.85))
    ink = scenes.random_colour(rng, (0.6, 1.0), (0.5, 0.95))
    cover = _pattern(rng, actor.action, times, actor.height, actor.width, flash)
    inks = np.broadcast_to(ink, (num_frames, 3))
    if _modality(actor.action) == 'audiovisual':
      inks = ink + (1.0 - ink) * 0.85 * flash[:, None]
    if _modality(actor.action) in _SOUND_MODALITIES:
      sounding = actor.action
    for i in range(num_frames):
      x, y = int(round(actor.x[i])), int(round(actor.y[i]))
      patch = body * (1.0 - cover[i, ..., None]) + inks[i] * cover[i, ..., None]
      frames[i, y:y + actor.height, x:x + actor.width] = patch
  frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
  sound = _sound(rng, sounding, t, sample_rate, onsets)
  sound = sound * scenes.fade_in_out(num_samples, int(0.005 * sample_rate))
  sound = sound / (np.max(np.abs(sound)) + 1e-9) * rng.uniform(0.2, 0.6)
  noise = scenes.background_noise(rng, num_samples)
  audio = np.clip(sound + noise, -1.0, 1.0).astype(np.float32)
  return frames, audio, actors


def _box_at(actor: Actor, frame: int, width: int, height: int):
  x, y = actor.x[frame], actor.y[frame]
  return (x / width, y / height, (x + actor.width) / width, (y + actor.height) / height)


def _jitter(rng, box, amount=0.04):
  w, h = box[2] - box[0], box[3] - box[1]
  noise = rng.normal(0.0, amount, 4) * np.array([w, h, w, h])
  x1, y1, x2, y2 = np.asarray(box) + noise
  return (x1, y1, max(x2, x1 + 0.01), max(y2, y1 + 0.01))


def generate(output_dir: str, num_videos: int = 24, seed: int = 0, *,
             size: Tuple[int, int] = (128, 96), duration_sec: float = 4.0, fps: int = 30,
             sample_rate: int = 16000, val_fraction: float = 0.25,
             classes: Optional[Sequence[str]] = None, progress: bool = True) -> dict:
  """Writes the detection dataset into ``output_dir``; returns the paths of its files.

  Args:
    output_dir: created if missing.
    num_videos: videos over both splits (``train`` and ``validation``).
    seed: everything written is a deterministic function of it.
    size: ``(width, height)``, both even.
    duration_sec: video length (>= 2 s: keyframes are the whole seconds 1 .. end - 1).
    fps: frame rate.
    sample_rate: audio sample rate.
    val_fraction: share of the videos in ``validation`` (at least one each).
    classes: actions (a subset of ``synthetic_scenes.CLASS_NAMES``);
      action id = position in this list + 1.
    progress: show a tqdm progress bar.

  Returns:
    ``{'video_dir', 'groundtruth': {split: csv}, 'detections': {split: csv},
    'excluded': {split: csv}, 'label_map': pbtxt}``.
  """
  width, height = size
  names = list(classes or DEFAULT_CLASSES)
  for name in names:
    if name not in scenes.CLASS_NAMES:
      raise UserError(f'unknown class {name!r}; expected some of {scenes.CLASS_NAMES}')
  if width % 2 or height % 2 or width < 32 or height < 32:
    raise UserError(f'size {width}x{height}: both sides must be even and >= 32')
  if duration_sec < 2:
    raise UserError(f'duration {duration_sec} s: at least 2 s (keyframes are whole seconds '
                    'from 1 s to the last whole second before the end)')
  if num_videos < 2:
    raise UserError(f'{num_videos} videos: at least 2 (one per split)')
  num_val = min(max(1, int(round(num_videos * val_fraction))), num_videos - 1)
  splits = ['train'] * (num_videos - num_val) + ['validation'] * num_val
  video_dir = fs.join(output_dir, 'videos')
  ann_dir = fs.join(output_dir, 'annotations')
  fs.makedirs(video_dir)
  fs.makedirs(ann_dir)
  num_frames = int(round(duration_sec * fps))
  seconds = [s for s in range(1, int(np.ceil(duration_sec))) if s * fps < num_frames]
  gt_rows = {s: [] for s in ('train', 'validation')}
  det_rows = {s: [] for s in ('train', 'validation')}
  excluded = []
  jobs = list(enumerate(splits))
  for number, split in (tqdm(jobs, desc='Generating videos', unit='video') if progress else jobs):
    video_id = f'syn_{split}_{number:03d}'
    rng = np.random.default_rng([seed, 7, number])
    frames, audio, actors = render_video(rng, names, size=size, duration_sec=duration_sec,
                                         fps=fps, sample_rate=sample_rate)
    local = fs.join(video_dir, f'{video_id}.mp4')
    write_video(local, frames, fps=fps, audio=audio, sample_rate=sample_rate)
    for sec in seconds:
      stamp = ava_files.VIDEO_START_SEC + sec
      for person, actor in enumerate(actors):
        box = _box_at(actor, sec * fps, width, height)
        action_id = names.index(actor.action) + 1
        gt_rows[split].append((video_id, stamp, box, action_id, person))
        det_rows[split].append((video_id, stamp, _jitter(rng, box), None,
                                rng.uniform(0.82, 1.0)))
      draw = rng.uniform()
      if draw < 0.4:  # a false box: mostly below the 0.8 threshold, rarely above it
        x, y = rng.uniform(0, 0.6, 2)
        score = rng.uniform(0.8, 0.85) if draw < 0.05 else rng.uniform(0.2, 0.75)
        det_rows[split].append((video_id, stamp, (x, y, x + 0.3, y + 0.4), None, score))
    if split == 'validation' and not excluded:
      excluded.append((video_id, ava_files.VIDEO_START_SEC + seconds[0]))
  files = {'video_dir': video_dir, 'groundtruth': {}, 'detections': {}, 'excluded': {},
           'label_map': fs.join(ann_dir, 'label_map.pbtxt')}
  for split in ('train', 'validation'):
    files['groundtruth'][split] = fs.join(ann_dir, f'ava_{split}.csv')
    files['detections'][split] = fs.join(ann_dir, f'ava_{split}_predicted_boxes.csv')
    # Ground truth keeps its boxes inside the frame (AVA's annotations are);
    # the jittered detections may not.
    fs.write_text(files['groundtruth'][split], ava_files.format_boxes_csv(
        [(v, t, ava_files.clip_box(b)[0], a, p) for v, t, b, a, p in gt_rows[split]]))
    fs.write_text(files['detections'][split],
                  ava_files.format_boxes_csv(det_rows[split], person_ids=False))
  files['excluded']['validation'] = fs.join(ann_dir, 'ava_validation_excluded_timestamps.csv')
  fs.write_text(files['excluded']['validation'], ava_files.format_excluded_csv(excluded))
  fs.write_text(files['label_map'],
                ava_files.format_label_map((i + 1, name) for i, name in enumerate(names)))
  info = {'classes': [dataclasses.asdict(scenes.CLASSES_BY_NAME[n]) | {'action_id': i + 1}
                      for i, n in enumerate(names)],
          'settings': {'seed': seed, 'num_videos': num_videos,
                       'split_counts': {'train': splits.count('train'),
                                        'validation': splits.count('validation')},
                       'width': width, 'height': height, 'duration_sec': duration_sec,
                       'fps': fps, 'sample_rate': sample_rate,
                       'keyframe_seconds': [ava_files.VIDEO_START_SEC + s for s in seconds]},
          'files': files}
  fs.write_text(fs.join(output_dir, 'detection_classes.json'), json.dumps(info, indent=2) + '\n')
  return files


def prepare_command(output_dir: str, files: dict, prepared_dir: str) -> str:
  """The ``data_pipelines.prepare`` command line for the files :func:`generate` wrote."""
  def pairs(table):
    return ' '.join(f'{s}={p}' for s, p in sorted(table.items()))
  return (f'python -m data_pipelines.prepare --dataset ava --output_dir {prepared_dir} '
          f'--video_dir {files["video_dir"]} --ava_groundtruth {pairs(files["groundtruth"])} '
          f'--ava_detections {pairs(files["detections"])} '
          f'--ava_excluded {pairs(files["excluded"])} --label_map {files["label_map"]}')
