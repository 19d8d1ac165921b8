"""A built-in audiovisual dataset whose classes need sight, sound, or both.

``python -m data_pipelines.synthetic --output_dir D`` writes real mp4 files
(H.264 video + AAC mono audio at 16 kHz, through PyAV), a ``manifest.csv``
(``path,label,split``; the format ``data_pipelines.prepare`` consumes) and a
``classes.json``. Everything is a deterministic function of ``--seed``.
With ``--detection`` it writes the AVA-format detection dataset instead
(data_pipelines/synthetic_detection.py).

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
the visual classes is everywhere in it. A tiny CNN trained for a few hundred
steps on a CPU learns that far sooner: with one bar (which a crop often cut
off) the quickstart's visual-only model reached 27% top-1 after 300 steps,
with the fields 42% (SGD at lr 0.02, 56 training videos per class).

Nuisance factors (colours, background gradient and pixel noise, layout,
spacing and sizes of the shapes, their angles, speeds and directions, periods
and phases, loudness, pitch, noise colour and level) are random per video, so
no simple statistic of the blind modality leaks the label.
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import dataclasses
import functools
import io
import multiprocessing
from typing import Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from data_pipelines import errors, fs
from data_pipelines.errors import UserError
from data_pipelines.video_io import write_video

MANIFEST_NAME = 'manifest.csv'
CLASSES_NAME = 'classes.json'


@dataclasses.dataclass(frozen=True)
class ClassSpec:
  """One synthetic class: its name, the modality it needs, and what it shows."""
  name: str
  modality: str  # 'visual' | 'audio' | 'audiovisual'
  description: str


CLASSES: Tuple[ClassSpec, ...] = (
  ClassSpec('left_right', 'visual',
            'A field of bars slides left or right; ambient noise.'),
  ClassSpec('up_down', 'visual',
            'A field of bars slides up or down; ambient noise.'),
  ClassSpec('rotating', 'visual',
            'A field of bars spins in place; ambient noise.'),
  ClassSpec('whistle', 'audio',
            'A still field of disks; repeated upward pure-tone sweeps (a whistle).'),
  ClassSpec('hum', 'audio',
            'A still field of disks; a steady low harmonic hum.'),
  ClassSpec('noise_bursts', 'audio',
            'A still field of disks; short bursts of noise.'),
  ClassSpec('click_in_sync', 'audiovisual',
            'A field of squares flashes periodically; a click sounds at each flash.'),
  ClassSpec('click_out_of_sync', 'audiovisual',
            'A field of squares flashes periodically; a click sounds half a period '
            '(>= 0.5 s) after each flash.'),
)
CLASS_NAMES: Tuple[str, ...] = tuple(c.name for c in CLASSES)
_BY_NAME = {c.name: c for c in CLASSES}

# Period range of the audiovisual events; the out-of-sync click sits half a
# period after the flash, so the smallest period sets the smallest offset.
_AV_PERIOD_SEC = (1.0, 1.4)
# The audiovisual classes' events: 'brief' ones are a 4-frame flash and a 40 ms
# click; 'ringing' flashes and clicks fade out over RINGING_SEC. A Slow pathway
# at 16-frame stride samples every 0.53 s: with brief events the quickstart's
# models fit the 32 training videos of each sync class by their looks and stay
# at chance on the validation videos; with ringing ones a model trained on the
# two classes learns them (README, "The sync classes"). RINGING_SEC is under
# half the smallest period, so an out-of-sync click ends before the next flash.
SYNC_EVENTS = ('brief', 'ringing')
RINGING_SEC = 0.4
_BRIEF_FLASH_SEC = 0.133  # 4 frames at 30 fps: a Fast pathway at stride 4 sees it


# ------------------------------------------------------------------ visuals

def _random_colour(rng: np.random.Generator, sat: Tuple[float, float],
                   val: Tuple[float, float]) -> np.ndarray:
  rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
  return np.asarray(rgb, np.float32)


def _scene(rng: np.random.Generator, num_frames: int, height: int, width: int):
  """Background frames ``[T, H, W, 3]`` in [0, 1] and a contrasting object colour.

  The background is a two-colour gradient in a random direction plus temporal
  pixel noise of random strength; every class draws it the same way.
  """
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  c0 = _random_colour(rng, (0.0, 0.6), (0.1, 0.9))
  c1 = _random_colour(rng, (0.0, 0.6), (0.1, 0.9))
  angle = rng.uniform(0, 2 * np.pi)
  proj = (xx - width / 2) * np.cos(angle) + (yy - height / 2) * np.sin(angle)
  ramp = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
  background = c0 + (c1 - c0) * ramp[..., None]
  # Object colours avoid near-white so the audiovisual flash (a blend towards
  # white) stays visible; resample until the object stands out from both ends
  # of the gradient, keeping objects "large and clear" for a tiny CNN.
  for _ in range(100):
    colour = _random_colour(rng, (0.5, 1.0), (0.45, 0.8))
    if min(np.linalg.norm(colour - c0), np.linalg.norm(colour - c1)) > 0.35:
      break
  noise_std = rng.uniform(0.0, 0.025)
  noise = rng.normal(0.0, 1.0, (num_frames, height, width, 1)).astype(np.float32)
  frames = background[None] + noise_std * noise
  return frames, colour


def _field(rng, height: int, width: int, spacing: float, margin: float):
  """Element centres on a jittered grid that tiles a torus a little larger than the frame.

  Returns ``(x0, y0, period_x, period_y)``: element ``k`` sits at
  ``(x0[k] mod period_x - margin, y0[k] mod period_y - margin)``, so a field
  shifted by any amount (wrapping around) still covers the frame evenly, and
  an element wraps only while it is out of sight (``margin`` > its radius).
  """
  cols = int(np.ceil((width + 2 * margin) / spacing))
  rows = int(np.ceil((height + 2 * margin) / spacing))
  gx, gy = np.meshgrid((np.arange(cols) + 0.5) * spacing, (np.arange(rows) + 0.5) * spacing)
  jitter = rng.uniform(-0.15, 0.15, (2, rows, cols)) * spacing
  return (gx + jitter[0]).ravel(), (gy + jitter[1]).ravel(), cols * spacing, rows * spacing


def _stamp(height: int, width: int, cx, cy, radius: float, coverage):
  """Union (max) of the coverage ``[T, H, W]`` of ``K`` small elements.

  ``cx``, ``cy``: ``[K, T]`` centres; ``coverage(k, dx, dy)`` gives element
  ``k``'s anti-aliased coverage ``[T, P, P]`` at pixel offsets ``dx`` ``[T, 1, P]``,
  ``dy`` ``[T, P, 1]`` from its centre. Each element is drawn in a
  ``P x P`` window around its centre only, so a frame full of elements costs
  about as much as one frame-sized mask.
  """
  cx, cy = np.asarray(cx, np.float64), np.asarray(cy, np.float64)
  num, frames = cx.shape
  half = int(np.ceil(radius)) + 1
  offsets = np.arange(-half, half + 1)
  size = len(offsets)
  # A canvas with a border of one window, so windows never need clipping.
  canvas = np.zeros((frames, height + 2 * size, width + 2 * size), np.float32)
  ix, iy = np.round(cx).astype(np.int64), np.round(cy).astype(np.int64)
  for k in range(num):
    # Frames where the window overlaps the picture.
    visible = ((ix[k] >= -half) & (ix[k] < width + half)
               & (iy[k] >= -half) & (iy[k] < height + half))
    if not visible.any():
      continue
    dx = (ix[k][:, None, None] + offsets[None, None, :]) - cx[k][:, None, None]
    dy = (iy[k][:, None, None] + offsets[None, :, None]) - cy[k][:, None, None]
    cover = coverage(k, dx, dy).astype(np.float32)
    for t in np.flatnonzero(visible):
      x, y = ix[k, t] + size - half, iy[k, t] + size - half
      window = canvas[t, y:y + size, x:x + size]
      np.maximum(window, cover[t], out=window)
  return canvas[:, size:size + height, size:size + width]


def _bar_coverage(angle, length, thickness):
  """``coverage(k, dx, dy)`` of bars with per-element, per-frame ``angle`` ``[K, T]``."""
  def coverage(k, dx, dy):
    a = angle[k][:, None, None]
    u = dx * np.cos(a) + dy * np.sin(a)
    v = -dx * np.sin(a) + dy * np.cos(a)
    return np.clip(0.5 - np.maximum(np.abs(u) - length / 2, np.abs(v) - thickness / 2), 0.0, 1.0)
  return coverage


def _field_positions(x0, y0, period_x, period_y, margin, shift_x, shift_y):
  """Centres ``[K, T]`` of a field shifted by ``(shift_x, shift_y)`` ``[T]`` (wrapping)."""
  cx = np.mod(x0[:, None] + shift_x[None, :], period_x) - margin
  cy = np.mod(y0[:, None] + shift_y[None, :], period_y) - margin
  return cx, cy


def _bar_field(rng, motion, times, height, width):
  """Coverage of the visual group: a field of bars that all move the same way.

  ``left_right`` / ``up_down``: the field slides along x / y (either way) at
  1-2 grid spacings per second; ``rotating``: the bars stay put and spin.
  Bars start at random angles, so only their motion tells the classes apart;
  motion fills the frame, so every crop of it shows the class.
  """
  short = min(height, width)
  spacing = rng.uniform(0.3, 0.38) * short
  length = rng.uniform(0.6, 0.8) * spacing
  thickness = rng.uniform(0.2, 0.28) * spacing
  margin = length / 2 + 2
  x0, y0, px, py = _field(rng, height, width, spacing, margin)
  num, t = len(x0), len(times)
  angle0 = rng.uniform(0, np.pi, num)
  direction = rng.choice([-1.0, 1.0])
  speed = rng.uniform(1.0, 2.0) * spacing
  still = np.zeros(t)
  if motion == 'rotating':
    spin = direction * rng.uniform(1.5, 3.0)
    angle = angle0[:, None] + spin * times[None, :]
    cx, cy = _field_positions(x0, y0, px, py, margin, still, still)
  elif motion in ('left_right', 'up_down'):
    angle = np.repeat(angle0[:, None], t, axis=1)
    shift = direction * speed * times
    if motion == 'left_right':
      cx, cy = _field_positions(x0, y0, px, py, margin, shift, still)
    else:
      cx, cy = _field_positions(x0, y0, px, py, margin, still, shift)
  else:
    raise UserError(f'unknown motion {motion!r}')
  return _stamp(height, width, cx, cy, margin, _bar_coverage(angle, length, thickness))


def _disk_field(rng, times, height, width):
  """Coverage of the audio group: a still field of disks, the same for every audio class."""
  short = min(height, width)
  spacing = rng.uniform(0.3, 0.38) * short
  radius = rng.uniform(0.25, 0.32) * spacing
  margin = radius + 2
  x0, y0, px, py = _field(rng, height, width, spacing, margin)
  still = np.zeros(len(times))
  cx, cy = _field_positions(x0, y0, px, py, margin, still, still)

  def coverage(k, dx, dy):
    return np.clip(0.5 - (np.sqrt(dx ** 2 + dy ** 2) - radius), 0.0, 1.0)
  return _stamp(height, width, cx, cy, margin, coverage)


def _square_field(rng, times, height, width, flash):
  """Coverage of the audiovisual group: a still field of squares that all swell by
  25% with ``flash`` ``[T]`` (in [0, 1])."""
  short = min(height, width)
  spacing = rng.uniform(0.3, 0.38) * short
  half = rng.uniform(0.2, 0.26) * spacing
  margin = 1.25 * half + 2
  x0, y0, px, py = _field(rng, height, width, spacing, margin)
  still = np.zeros(len(times))
  cx, cy = _field_positions(x0, y0, px, py, margin, still, still)
  grow = (half * (1.0 + 0.25 * np.asarray(flash)))[:, None, None]

  def coverage(k, dx, dy):
    return np.clip(0.5 - (np.maximum(np.abs(dx), np.abs(dy)) - grow), 0.0, 1.0)
  return _stamp(height, width, cx, cy, margin, coverage)


def _flash_envelope(times, onsets, length=_BRIEF_FLASH_SEC):
  """1 at each onset, decaying linearly to 0 over ``length`` s; max over onsets."""
  age = times[:, None] - np.asarray(onsets)[None, :]
  env = np.where((age >= 0) & (age < length), 1.0 - age / length, 0.0)
  return env.max(axis=1) if env.size else np.zeros_like(times)


# -------------------------------------------------------------------- audio

def _coloured_noise(rng, num_samples, exponent):
  """Unit-RMS noise with power spectrum ~ 1 / f**exponent (0 white, 2 brown)."""
  spectrum = np.fft.rfft(rng.normal(size=num_samples))
  freqs = np.arange(len(spectrum), dtype=np.float64)
  freqs[0] = 1.0
  noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=num_samples)
  return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def _background_noise(rng, num_samples):
  """The hiss under every soundtrack: random colour and level."""
  return rng.uniform(0.002, 0.02) * _coloured_noise(rng, num_samples, rng.uniform(0.0, 2.0))


def _fade(num, fade):
  env = np.ones(num)
  fade = min(fade, num // 2)
  if fade:
    ramp = np.linspace(0.0, 1.0, fade)
    env[:fade], env[-fade:] = ramp, ramp[::-1]
  return env


def _ambient(rng, t, sr):
  """The visual group's soundtrack: modulated coloured noise, independent of the class."""
  noise = _coloured_noise(rng, len(t), rng.uniform(0.0, 2.0))
  depth = rng.uniform(0.0, 0.6)
  mod = 1.0 - depth * 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t
                                        + rng.uniform(0, 2 * np.pi)))
  return noise * mod


def _whistle(rng, t, sr):
  """Repeated upward pure-tone sweeps with a random start pitch and sweep shape."""
  f0 = np.exp(rng.uniform(np.log(500.0), np.log(1200.0)))
  ratio = rng.uniform(1.6, 2.4)
  sweep, gap = rng.uniform(0.35, 0.7), rng.uniform(0.08, 0.25)
  period = sweep + gap
  # A random phase so sweeps are not locked to the start of the file.
  pos = np.mod(t + rng.uniform(0, period), period)
  on = pos < sweep
  freq = np.where(on, f0 * ratio ** (np.minimum(pos, sweep) / sweep), f0)
  phase = 2 * np.pi * np.cumsum(freq) / sr
  # 10 ms ramps at both ends of every sweep avoid broadband clicks.
  ramp = 0.01
  env = np.clip(np.minimum(pos, sweep - pos) / ramp, 0.0, 1.0) * on
  return np.sin(phase) * env


def _hum(rng, t, sr):
  """A steady low hum: a fundamental with two harmonics and a slight vibrato."""
  f0 = rng.uniform(70.0, 160.0)
  vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t)
  phase = 2 * np.pi * np.cumsum(f0 * vibrato) / sr + rng.uniform(0, 2 * np.pi)
  amps = (1.0, rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.4))
  return sum(a * np.sin((k + 1) * phase) for k, a in enumerate(amps))


def _noise_bursts(rng, t, sr):
  """Short noise bursts with random gaps (<= 0.6 s so every window holds several)."""
  out = np.zeros(len(t))
  exponent = rng.uniform(0.0, 1.5)
  start = -rng.uniform(0.0, 0.3)
  while start < t[-1]:
    length = rng.uniform(0.05, 0.15)
    n = int(length * sr)
    burst = _coloured_noise(rng, n, exponent) * np.exp(-np.arange(n) / (0.4 * n))
    burst[:int(0.005 * sr)] *= np.linspace(0, 1, int(0.005 * sr))
    first = int(round(start * sr))
    lo, hi = max(first, 0), min(first + n, len(t))
    if hi > lo:
      out[lo:hi] += burst[lo - first:hi - first] * rng.uniform(0.6, 1.0)
    start += length + rng.uniform(0.15, 0.6)
  return out


def _place(t, sr, sound, times):
  """``sound`` added at each of ``times`` seconds into a track of ``len(t)`` samples."""
  out = np.zeros(len(t))
  n = len(sound)
  for time in times:
    first = int(round(time * sr))
    lo, hi = max(first, 0), min(first + n, len(t))
    if hi > lo:
      out[lo:hi] += sound[lo - first:hi - first]
  return out


def _clicks(rng, t, sr, times):
  """A short damped-sine click (random pitch) at each of ``times`` seconds (brief
  events, and the detection dataset's)."""
  freq = rng.uniform(1500.0, 3000.0)
  n = int(0.04 * sr)
  k = np.arange(n) / sr
  click = np.sin(2 * np.pi * freq * k) * np.exp(-k / 0.008)
  click += 0.3 * rng.normal(size=n) * np.exp(-k / 0.004)
  return _place(t, sr, click, times)


def _ringing_clicks(rng, t, sr, times, length):
  """A ringing click at each of ``times`` seconds: a tone (random pitch) with a little
  noise, starting at full level and fading linearly to silence over ``length`` s."""
  freq = rng.uniform(1500.0, 3000.0)
  n = int(round(length * sr))
  k = np.arange(n) / sr
  ring = (np.sin(2 * np.pi * freq * k) + 0.3 * rng.normal(size=n)) * (1.0 - k / length)
  return _place(t, sr, ring, times)


# ------------------------------------------------------------------ examples

def render_example(class_name: str, rng: np.random.Generator, *, size: Tuple[int, int] = (96, 72),
                   duration_sec: float = 3.0, fps: int = 30, sample_rate: int = 16000,
                   sync_events: str = 'brief') -> Tuple[np.ndarray, np.ndarray]:
  """Renders one example of ``class_name`` in memory.

  Args:
    class_name: one of ``CLASS_NAMES``.
    rng: the source of every random choice (the example is a function of it).
    size: ``(width, height)`` of the frames, both even.
    duration_sec: length of the video and of its soundtrack.
    fps: frame rate.
    sample_rate: audio sample rate.
    sync_events: the audiovisual classes' flashes and clicks, one of ``SYNC_EVENTS``.

  Returns:
    ``frames`` uint8 ``[T, H, W, 3]`` RGB and ``audio`` float32 ``[S]`` in [-1, 1].
  """
  spec = _BY_NAME.get(class_name)
  if spec is None:
    raise UserError(f'unknown class {class_name!r}; expected one of {CLASS_NAMES}')
  _check_sync_events(sync_events)
  width, height = size
  num_frames = int(round(duration_sec * fps))
  num_samples = int(round(duration_sec * sample_rate))
  times = np.arange(num_frames) / fps
  t = np.arange(num_samples) / sample_rate

  frames, colour = _scene(rng, num_frames, height, width)
  if spec.modality == 'visual':
    mask = _bar_field(rng, class_name, times, height, width)
    colours = np.broadcast_to(colour, (num_frames, 3))
    sound = _ambient(rng, t, sample_rate)
  elif spec.modality == 'audio':
    mask = _disk_field(rng, times, height, width)
    colours = np.broadcast_to(colour, (num_frames, 3))
    sound = {'whistle': _whistle, 'hum': _hum, 'noise_bursts': _noise_bursts}[class_name](
        rng, t, sample_rate)
  else:
    # Periodic events at a random period and phase. Both classes draw the
    # flashes and the click train the same way; only the click offset (0 or
    # half a period) depends on the class, so each stream alone is uninformative.
    period = rng.uniform(*_AV_PERIOD_SEC)
    phase = rng.uniform(0.0, period)
    onsets = phase + period * np.arange(-2, int(duration_sec / period) + 2)
    offset = 0.0 if class_name == 'click_in_sync' else period / 2
    ringing = sync_events == 'ringing'
    flash = _flash_envelope(times, onsets, RINGING_SEC if ringing else _BRIEF_FLASH_SEC)
    mask = _square_field(rng, times, height, width, flash)
    colours = colour + (1.0 - colour) * 0.85 * flash[:, None]
    sound = (_ringing_clicks(rng, t, sample_rate, onsets + offset, RINGING_SEC) if ringing
             else _clicks(rng, t, sample_rate, onsets + offset))

  frames = frames * (1.0 - mask[..., None]) + colours[:, None, None, :] * mask[..., None]
  frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)

  # Random loudness for the class sound, then the shared background hiss.
  sound = sound * _fade(num_samples, int(0.005 * sample_rate))
  sound = sound / (np.max(np.abs(sound)) + 1e-9) * rng.uniform(0.2, 0.6)
  audio = np.clip(sound + _background_noise(rng, num_samples), -1.0, 1.0).astype(np.float32)
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


def _split_counts(num: int, val_fraction: float, test_fraction: float) -> Tuple[int, int, int]:
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
             num_workers: int = 1, sync_events: str = 'brief') -> str:
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
    if name not in _BY_NAME:
      raise UserError(f'unknown class {name!r}; expected some of {CLASS_NAMES}')
  _check_sync_events(sync_events)
  counts = _split_counts(num_videos_per_class, val_fraction, test_fraction)
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
                             sync_events=sync_events)
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

  info = {
    'classes': [dataclasses.asdict(_BY_NAME[n]) for n in names],
    'settings': {
      'seed': seed, 'num_videos_per_class': num_videos_per_class,
      'split_counts': dict(zip(('train', 'validation', 'test'), counts)),
      'width': width, 'height': height, 'duration_sec': duration_sec, 'fps': fps,
      'sample_rate': sample_rate, 'video_codec': 'h264', 'audio_codec': 'aac',
      'sync_events': sync_events,
    },
  }
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
  parser.add_argument('--no_progress', action='store_true')
  parser.add_argument('--num_workers', type=int, default=1,
                      help='processes rendering videos (each video is drawn from its own seed)')
  parser.add_argument('--detection', action='store_true',
                      help='write the AVA-format detection dataset instead (moving actors with '
                      'boxes; data_pipelines/synthetic_detection.py); --num_videos then counts '
                      'videos over both splits, --size defaults to 128x96, --duration_sec to 4')
  args = parser.parse_args(argv)
  if args.detection:
    # Imported here: the detection mode builds on this module's patterns.
    from data_pipelines import synthetic_detection  # pylint: disable=g-import-not-at-top
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
      num_workers=args.num_workers, sync_events=args.sync_events)
  print(f'Wrote {manifest} and {fs.join(args.output_dir, CLASSES_NAME)}')
  return manifest


if __name__ == '__main__':
  errors.run(main)
