"""A built-in audiovisual dataset whose classes need sight, sound, or both.

``python -m data_pipelines.synthetic --output_dir D`` writes real mp4 files
(H.264 video + AAC mono audio at 16 kHz, through PyAV), a ``manifest.csv``
(``path,label,split``; the format ``data_pipelines.prepare`` consumes) and a
``classes.json``. Everything is a deterministic function of ``--seed``.
With ``--detection`` it writes the AVA-format detection dataset instead
(data_pipelines/synthetic_detection.py). Both draw their pictures and sounds
with data_pipelines/synthetic_scenes.py.

The classes come in three groups. Inside a group, every class draws the
modality it does *not* need from one shared generator that never sees the
label, so that modality carries no information about the class:

* visual (``left_right``, ``up_down``, ``rotating``): a field of bars at
  random angles slides along x, slides along y, or spins in place; the
  soundtrack is ambient noise drawn independently of the class. An audio-only
  model can only guess among them.
* audio (``whistle``, ``hum``, ``noise_bursts``): the same still field of
  disks; only the sound differs (an upward pure-tone sweep, a low harmonic
  hum, noise bursts). A visual-only model can only guess among them.
* audiovisual (``click_in_sync``, ``click_out_of_sync``): a field of squares
  flashes periodically and a click sounds periodically; the click starts
  with the flash or exactly half a period (at least 0.5 s) after it.
  By default (``sync_events='brief'``) the flash lasts 4 frames and the click
  40 ms; ``'ringing'`` flashes and clicks fade out over 0.4 s, so that a
  pathway sampled every 0.53 s (the Slow pathway of a 4x16 model, where the
  audio laterals join) sees each of them. Each modality alone has the same
  distribution in both classes; only their alignment tells them apart.

The pictures are fields of many small shapes filling the frame rather than
one object, so that every crop of a clip shows the class and the motion of
the visual classes is everywhere in it: a random crop can cut off one object,
never a field, so a tiny CNN sees the class in every training clip.

With ``upright`` (``--upright``; off by default) the scenes have an up that
the shapes and their motion carry, as in filmed scenes, so that a model can
tell a clip from the clip turned by 90 degrees (rotation prediction, the
pretext of ``configs/pretrain.py``). The still disks and squares are lit from
above (the upper half of each brighter, the lower half darker) and cast a
shadow straight below; the bars of the visual classes are not lit, their up
is in their motion: ``up_down`` is the field thrown up and falling back under
gravity, bouncing off an unseen floor (slower and slower up, faster and
faster down) instead of sliding either way, and ``left_right`` slides along
the horizontal (a clip turned by 90 degrees slides along the vertical, which
no upright clip does). Nothing else changes: no cue of the whole frame (the
background gradient keeps its random direction) gives the up away.

Nuisance factors (colours, background gradient and pixel noise, layout,
spacing and sizes of the shapes, their angles, speeds and directions, periods
and phases, loudness, pitch, noise colour and level) are random per video, so
no simple statistic of the blind modality leaks the label.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import multiprocessing
from typing import Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from data_pipelines import errors, fs, synthetic_detection
from data_pipelines import synthetic_scenes as scenes
from data_pipelines.errors import UserError
# The dataset's classes (defined with the pictures and sounds they use).
from data_pipelines.synthetic_scenes import CLASS_NAMES, CLASSES  # noqa: F401
from data_pipelines.video_io import write_video

MANIFEST_NAME = 'manifest.csv'
CLASSES_NAME = 'classes.json'


# The audiovisual classes' events: 'brief' ones are a 4-frame flash and a 40 ms
# click; 'ringing' flashes and clicks fade out over RINGING_SEC, so that a Slow
# pathway sampling every 0.53 s (16-frame stride) still sees each event. RINGING_SEC
# is under half the smallest period, so an out-of-sync click ends before the next flash.
SYNC_EVENTS = ('brief', 'ringing')
RINGING_SEC = 0.4


# ------------------------------------------------------------------ examples

def render_example(class_name: str, rng: np.random.Generator, *, size: Tuple[int, int] = (96, 72),
                   duration_sec: float = 3.0, fps: int = 30, sample_rate: int = 16000,
                   sync_events: str = 'brief', upright: bool = False
                   ) -> Tuple[np.ndarray, np.ndarray]:
  """Renders one example of ``class_name`` in memory.

  Args:
    class_name: one of ``CLASS_NAMES``.
    rng: the source of every random choice (the example is a function of it).
    size: ``(width, height)`` of the frames, both even.
    duration_sec: length of the video and of its soundtrack.
    fps: frame rate.
    sample_rate: audio sample rate.
    sync_events: the audiovisual classes' flashes and clicks, one of ``SYNC_EVENTS``.
    upright: scenes with an up (see the module docstring): disks and squares lit from
      above with shadows below, ``up_down`` falling and bouncing under gravity.

  Returns:
    ``frames`` uint8 ``[T, H, W, 3]`` RGB and ``audio`` float32 ``[S]`` in [-1, 1].
  """
  spec = scenes.CLASSES_BY_NAME.get(class_name)
  if spec is None:
    raise UserError(f'unknown class {class_name!r}; expected one of {CLASS_NAMES}')
  _check_sync_events(sync_events)
  width, height = size
  num_frames = int(round(duration_sec * fps))
  num_samples = int(round(duration_sec * sample_rate))
  times = np.arange(num_frames) / fps
  t = np.arange(num_samples) / sample_rate

  frames, colour = scenes.scene(rng, num_frames, height, width)
  if spec.modality == 'visual':
    mask = scenes.bar_field(rng, class_name, times, height, width, upright=upright)
    colours = np.broadcast_to(colour, (num_frames, 3))
    sound = scenes.ambient(rng, t, sample_rate)
  elif spec.modality == 'audio':
    mask = scenes.disk_field(rng, times, height, width, upright=upright)
    colours = np.broadcast_to(colour, (num_frames, 3))
    sound = scenes.CLASS_SOUNDS[class_name](rng, t, sample_rate)
  else:
    # Periodic events at a random period and phase. Both classes draw the
    # flashes and the click train the same way; only the click offset (0 or
    # half a period) depends on the class, so each stream alone is uninformative.
    period = rng.uniform(*scenes.AV_PERIOD_SEC)
    phase = rng.uniform(0.0, period)
    onsets = phase + period * np.arange(-2, int(duration_sec / period) + 2)
    offset = 0.0 if class_name == 'click_in_sync' else period / 2
    ringing = sync_events == 'ringing'
    flash = scenes.flash_envelope(times, onsets,
                                  RINGING_SEC if ringing else scenes.BRIEF_FLASH_SEC)
    mask = scenes.square_field(rng, times, height, width, flash, upright=upright)
    colours = colour + (1.0 - colour) * 0.85 * flash[:, None]
    sound = (scenes.ringing_clicks(rng, t, sample_rate, onsets + offset, RINGING_SEC)
             if ringing else scenes.clicks(rng, t, sample_rate, onsets + offset))

  if isinstance(mask, dict):  # upright scenes' disks and squares, lit from above
    frames = scenes.paint_lit(frames, mask, np.asarray(colours))
  else:
    frames = frames * (1.0 - mask[..., None]) + colours[:, None, None, :] * mask[..., None]
  frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)

  # Random loudness for the class sound, then the shared background hiss.
  sound = sound * scenes.fade_in_out(num_samples, int(0.005 * sample_rate))
  sound = sound / (np.max(np.abs(sound)) + 1e-9) * rng.uniform(0.2, 0.6)
  audio = np.clip(sound + scenes.background_noise(rng, num_samples), -1.0, 1.0).astype(np.float32)
  return frames, audio


def _check_sync_events(sync_events: str) -> None:
  if sync_events not in SYNC_EVENTS:
    raise UserError(f'unknown sync_events {sync_events!r}: expected one of {SYNC_EVENTS}')


def example_rng(seed: int, class_index: int, video_index: int) -> np.random.Generator:
  """The generator of video ``video_index`` of class ``class_index``.

  Each video has its own stream, so a video does not change when the dataset
  grows or when other classes change.
  """
  return np.random.default_rng([seed, class_index, video_index])


def _write_example(output_dir: str, seed: int, job, **settings) -> None:
  """Renders and writes one video; ``job`` = ``(relative path, class, split, class index,
  index)``."""
  rel, name, _, class_index, video_index = job
  frames, audio = render_example(name, example_rng(seed, class_index, video_index), **settings)
  path = fs.join(output_dir, rel)
  fs.makedirs(fs.dirname(path))
  write_video(path, frames, fps=settings['fps'], audio=audio,
              sample_rate=settings['sample_rate'])


def split_counts(num: int, val_fraction: float, test_fraction: float) -> Tuple[int, int, int]:
  """Per-class (train, validation, test) counts; at least one train video."""
  n_val = int(round(num * val_fraction))
  n_test = int(round(num * test_fraction))
  # Keep a non-empty validation (and test) split when asked for one and possible.
  if val_fraction > 0 and n_val == 0 and num - n_test >= 2:
    n_val = 1
  if test_fraction > 0 and n_test == 0 and num - n_val >= 2:
    n_test = 1
  n_train = num - n_val - n_test
  if n_train < 1:
    raise UserError(f'{num} videos per class leave no training video '
                     f'(val_fraction={val_fraction}, test_fraction={test_fraction})')
  return n_train, n_val, n_test


def generate(output_dir: str, num_videos_per_class: int = 20, seed: int = 0, *,
             size: Tuple[int, int] = (96, 72), duration_sec: float = 3.0, fps: int = 30,
             sample_rate: int = 16000, val_fraction: float = 0.2, test_fraction: float = 0.0,
             classes: Optional[Sequence[str]] = None, progress: bool = True,
             num_workers: int = 1, sync_events: str = 'brief', upright: bool = False) -> str:
  """Writes the dataset into ``output_dir`` and returns the manifest path.

  Args:
    output_dir: created if missing; receives ``videos/<class>/*.mp4``,
      ``manifest.csv`` and ``classes.json``.
    num_videos_per_class: videos per class over all splits.
    seed: everything written is a deterministic function of it.
    size: ``(width, height)``, both even.
    duration_sec: video length (>= 2.2 s so a 64-frame window at 30 fps fits).
    fps: frame rate.
    sample_rate: audio sample rate (mono AAC).
    val_fraction: share of each class in the ``validation`` split.
    test_fraction: share of each class in the ``test`` split (0: no test split).
    classes: a subset of ``CLASS_NAMES`` (default: all of them).
    progress: show a tqdm progress bar.
    num_workers: processes that render and encode videos (each video is drawn
      from its own seed, so what is rendered does not depend on it).
    sync_events: the audiovisual classes' flashes and clicks, one of ``SYNC_EVENTS``.
    upright: scenes with an up (disks and squares lit from above, ``up_down`` bouncing
      under gravity; see the module docstring). Off by default.

  Returns:
    The path of ``manifest.csv`` (header ``path,label,split``; paths relative
    to ``output_dir``).
  """
  width, height = size
  if width % 2 or height % 2 or width < 16 or height < 16:
    raise UserError(f'size {width}x{height}: both sides must be even and >= 16')
  if duration_sec * fps < 2:
    raise UserError(f'duration {duration_sec} s at {fps} fps is too short')
  names = list(CLASS_NAMES if classes is None else classes)
  for name in names:
    if name not in scenes.CLASSES_BY_NAME:
      raise UserError(f'unknown class {name!r}; expected some of {CLASS_NAMES}')
  _check_sync_events(sync_events)
  counts = split_counts(num_videos_per_class, val_fraction, test_fraction)
  splits = ['train'] * counts[0] + ['validation'] * counts[1] + ['test'] * counts[2]

  jobs = []
  for name in names:
    class_index = CLASS_NAMES.index(name)  # stable whatever subset is asked for
    for video_index, split in enumerate(splits):
      rel = f'videos/{name}/{name}_{video_index:04d}.mp4'
      jobs.append((rel, name, split, class_index, video_index))

  fs.makedirs(output_dir)
  render = functools.partial(_write_example, output_dir, seed, size=size,
                             duration_sec=duration_sec, fps=fps, sample_rate=sample_rate,
                             sync_events=sync_events, upright=upright)
  bar = tqdm(total=len(jobs), desc='Generating videos', unit='video', disable=not progress)
  if num_workers > 1:
    # spawn, not fork: the caller may have TensorFlow or jax threads running.
    with multiprocessing.get_context('spawn').Pool(num_workers) as pool:
      for _ in pool.imap_unordered(render, jobs):
        bar.update()
  else:
    for job in jobs:
      render(job)
      bar.update()
  bar.close()

  manifest = fs.join(output_dir, MANIFEST_NAME)
  rows = io.StringIO(newline='')
  writer = csv.writer(rows)
  writer.writerow(['path', 'label', 'split'])
  for rel, name, split, _, _ in jobs:
    writer.writerow([rel, name, split])
  fs.write_text(manifest, rows.getvalue())

  classes = [dataclasses.asdict(scenes.CLASSES_BY_NAME[n]) for n in names]
  if upright:
    for spec in classes:
      spec['description'] = scenes.UPRIGHT_DESCRIPTIONS.get(spec['name'], spec['description'])
  info = {
    'classes': classes,
    'settings': {
      'seed': seed, 'num_videos_per_class': num_videos_per_class,
      'split_counts': dict(zip(('train', 'validation', 'test'), counts)),
      'width': width, 'height': height, 'duration_sec': duration_sec, 'fps': fps,
      'sample_rate': sample_rate, 'video_codec': 'h264', 'audio_codec': 'aac',
      'sync_events': sync_events,
    },
  }
  if upright:  # only then: the default dataset's classes.json stays as it was
    info['settings']['upright'] = True
  fs.write_json(fs.join(output_dir, CLASSES_NAME), info)
  return manifest


def _parse_size(text: str) -> Tuple[int, int]:
  try:
    width, height = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected WIDTHxHEIGHT, e.g. 96x72, got {text!r}')
  return width, height


def main(argv: Optional[Sequence[str]] = None) -> str:
  """Command-line entry point; returns the manifest path."""
  parser = argparse.ArgumentParser(
      prog='python -m data_pipelines.synthetic',
      description='Write the built-in audiovisual dataset (mp4 files, manifest.csv, classes.json).')
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--num_videos', type=int, default=20,
                      help='videos per class over all splits (default 20: 16 train + 4 validation)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--size', type=_parse_size, default=None,
                      help='WIDTHxHEIGHT, both even (default 96x72)')
  parser.add_argument('--duration_sec', type=float, default=None, help='default 3')
  parser.add_argument('--fps', type=int, default=30)
  parser.add_argument('--sample_rate', type=int, default=16000)
  parser.add_argument('--val_fraction', type=float, default=0.2)
  parser.add_argument('--test_fraction', type=float, default=0.0)
  parser.add_argument('--classes', default='',
                      help=f'comma-separated subset of {",".join(CLASS_NAMES)} (default: all)')
  parser.add_argument('--sync_events', choices=SYNC_EVENTS, default='brief',
                      help='the sync classes\' flashes and clicks: brief (a 4-frame flash, a 40 '
                      f'ms click; the default) or ringing (fading out over {RINGING_SEC} s)')
  parser.add_argument('--upright', action='store_true',
                      help='scenes with an up: disks and squares lit from above with shadows '
                      'below, up_down thrown up and bouncing under gravity (default off)')
  parser.add_argument('--no_progress', action='store_true')
  parser.add_argument('--num_workers', type=int, default=1,
                      help='processes rendering videos (each video is drawn from its own seed)')
  parser.add_argument('--detection', action='store_true',
                      help='write the AVA-format detection dataset instead (moving actors with '
                      'boxes; data_pipelines/synthetic_detection.py); --num_videos then counts '
                      'videos over both splits, --size defaults to 128x96, --duration_sec to 4')
  args = parser.parse_args(argv)
  if args.detection:
    files = synthetic_detection.generate(
        args.output_dir, args.num_videos, args.seed, size=args.size or (128, 96),
        duration_sec=args.duration_sec or 4.0,
        fps=args.fps, sample_rate=args.sample_rate, val_fraction=args.val_fraction,
        classes=[c for c in args.classes.split(',') if c] or None,
        progress=not args.no_progress)
    print(f'Wrote {args.output_dir}; prepare it with:')
    print(synthetic_detection.prepare_command(args.output_dir, files,
                                              fs.join(args.output_dir, 'prepared')))
    return files['label_map']
  manifest = generate(
      args.output_dir, args.num_videos, args.seed, size=args.size or (96, 72),
      duration_sec=args.duration_sec or 3.0, fps=args.fps, sample_rate=args.sample_rate,
      val_fraction=args.val_fraction, test_fraction=args.test_fraction,
      classes=[c for c in args.classes.split(',') if c] or None, progress=not args.no_progress,
      num_workers=args.num_workers, sync_events=args.sync_events, upright=args.upright)
  print(f'Wrote {manifest} and {fs.join(args.output_dir, CLASSES_NAME)}')
  return manifest


if __name__ == '__main__':
  errors.run(main)
