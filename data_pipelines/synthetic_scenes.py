"""The synthetic datasets' classes, pictures and sounds (data_pipelines/synthetic.py and
data_pipelines/synthetic_detection.py draw their videos with them).

Every function draws from the ``numpy.random.Generator`` it is given, in a fixed
order, so a video is a function of its generator's seed. Pictures are coverage
masks ``[T, H, W]`` in [0, 1] of fields of small shapes (bars, disks, squares)
over a background (:func:`scene`); sounds are float tracks of ``len(t)``
samples at ``sr`` Hz, scaled by the caller.
"""

from __future__ import annotations

import colorsys
import dataclasses
from typing import Tuple

import numpy as np

from data_pipelines.errors import UserError


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
# The classes whose description differs in upright scenes (``upright=True``).
UPRIGHT_DESCRIPTIONS = {
    'up_down': 'A field of bars is thrown up and falls back under gravity, bouncing; '
               'ambient noise.',
}
CLASS_NAMES: Tuple[str, ...] = tuple(c.name for c in CLASSES)
CLASSES_BY_NAME = {c.name: c for c in CLASSES}

# Period range of the audiovisual events; the out-of-sync click sits half a
# period after the flash, so the smallest period sets the smallest offset.
AV_PERIOD_SEC = (1.0, 1.4)
BRIEF_FLASH_SEC = 0.133  # 4 frames at 30 fps: a Fast pathway at stride 4 sees it


# ------------------------------------------------------------------ visuals

def random_colour(rng: np.random.Generator, sat: Tuple[float, float],
                  val: Tuple[float, float]) -> np.ndarray:
  """An RGB colour in [0, 1] of random hue, saturation in ``sat`` and value in ``val``."""
  rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
  return np.asarray(rgb, np.float32)


def scene(rng: np.random.Generator, num_frames: int, height: int, width: int):
  """Background frames ``[T, H, W, 3]`` in [0, 1] and a contrasting object colour.

  The background is a two-colour gradient in a random direction plus temporal
  pixel noise of random strength; every class draws it the same way.
  """
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  c0 = random_colour(rng, (0.0, 0.6), (0.1, 0.9))
  c1 = random_colour(rng, (0.0, 0.6), (0.1, 0.9))
  angle = rng.uniform(0, 2 * np.pi)
  proj = (xx - width / 2) * np.cos(angle) + (yy - height / 2) * np.sin(angle)
  ramp = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
  background = c0 + (c1 - c0) * ramp[..., None]
  # Object colours avoid near-white so the audiovisual flash (a blend towards
  # white) stays visible; resample until the object stands out from both ends
  # of the gradient, keeping objects "large and clear" for a tiny CNN.
  for _ in range(100):
    colour = random_colour(rng, (0.5, 1.0), (0.45, 0.8))
    if min(np.linalg.norm(colour - c0), np.linalg.norm(colour - c1)) > 0.35:
      break
  noise_std = rng.uniform(0.0, 0.025)
  noise = rng.normal(0.0, 1.0, (num_frames, height, width, 1)).astype(np.float32)
  frames = background[None] + noise_std * noise
  return frames, colour


def field_grid(rng, height: int, width: int, spacing: float, margin: float):
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


def stamp(height: int, width: int, cx, cy, radius: float, coverage):
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


def bar_coverage(angle, length, thickness):
  """``coverage(k, dx, dy)`` of bars with per-element, per-frame ``angle`` ``[K, T]``."""
  def coverage(k, dx, dy):
    a = angle[k][:, None, None]
    u = dx * np.cos(a) + dy * np.sin(a)
    v = -dx * np.sin(a) + dy * np.cos(a)
    return np.clip(0.5 - np.maximum(np.abs(u) - length / 2, np.abs(v) - thickness / 2), 0.0, 1.0)
  return coverage


def field_positions(x0, y0, period_x, period_y, margin, shift_x, shift_y):
  """Centres ``[K, T]`` of a field shifted by ``(shift_x, shift_y)`` ``[T]`` (wrapping)."""
  cx = np.mod(x0[:, None] + shift_x[None, :], period_x) - margin
  cy = np.mod(y0[:, None] + shift_y[None, :], period_y) - margin
  return cx, cy


def bar_field(rng, motion, times, height, width, upright: bool = False):
  """Coverage of the visual group: a field of bars that all move the same way.

  ``left_right`` / ``up_down``: the field slides along x / y (either way) at
  1-2 grid spacings per second; ``rotating``: the bars stay put and spin.
  Bars start at random angles, so only their motion tells the classes apart;
  motion fills the frame, so every crop of it shows the class.

  ``upright``: ``up_down`` is the field thrown up and falling back under gravity,
  bouncing off an unseen floor (:func:`bounce_height`), instead of sliding either
  way. The bars are not lit (:func:`lit_field`): their up is in their motion.
  """
  short = min(height, width)
  spacing = rng.uniform(0.3, 0.38) * short
  length = rng.uniform(0.6, 0.8) * spacing
  thickness = rng.uniform(0.2, 0.28) * spacing
  margin = length / 2 + 2
  x0, y0, px, py = field_grid(rng, height, width, spacing, margin)
  num, t = len(x0), len(times)
  angle0 = rng.uniform(0, np.pi, num)
  direction = rng.choice([-1.0, 1.0])
  speed = rng.uniform(1.0, 2.0) * spacing
  still = np.zeros(t)
  if motion == 'rotating':
    spin = direction * rng.uniform(1.5, 3.0)
    angle = angle0[:, None] + spin * times[None, :]
    cx, cy = field_positions(x0, y0, px, py, margin, still, still)
  elif motion in ('left_right', 'up_down'):
    angle = np.repeat(angle0[:, None], t, axis=1)
    shift = direction * speed * times
    if upright and motion == 'up_down':
      # Image y grows downwards: the field rises from the floor and falls back.
      shift = -bounce_height(rng, times, speed)
    if motion == 'left_right':
      cx, cy = field_positions(x0, y0, px, py, margin, shift, still)
    else:
      cx, cy = field_positions(x0, y0, px, py, margin, still, shift)
  else:
    raise UserError(f'unknown motion {motion!r}')
  return stamp(height, width, cx, cy, margin, bar_coverage(angle, length, thickness))


def disk_field(rng, times, height, width, upright: bool = False):
  """Coverage of the audio group: a still field of disks, the same for every audio class
  (``upright``: lit from above, :func:`lit_field`)."""
  short = min(height, width)
  spacing = rng.uniform(0.3, 0.38) * short
  radius = rng.uniform(0.25, 0.32) * spacing
  margin = radius + 2
  x0, y0, px, py = field_grid(rng, height, width, spacing, margin)
  still = np.zeros(len(times))
  cx, cy = field_positions(x0, y0, px, py, margin, still, still)

  def coverage(k, dx, dy):
    return np.clip(0.5 - (np.sqrt(dx ** 2 + dy ** 2) - radius), 0.0, 1.0)
  if upright:
    return lit_field(height, width, cx, cy, margin, coverage, lambda k: radius, spacing)
  return stamp(height, width, cx, cy, margin, coverage)


def square_field(rng, times, height, width, flash, upright: bool = False):
  """Coverage of the audiovisual group: a still field of squares that all swell by
  25% with ``flash`` ``[T]`` (in [0, 1]) (``upright``: lit from above, :func:`lit_field`)."""
  short = min(height, width)
  spacing = rng.uniform(0.3, 0.38) * short
  half = rng.uniform(0.2, 0.26) * spacing
  margin = 1.25 * half + 2
  x0, y0, px, py = field_grid(rng, height, width, spacing, margin)
  still = np.zeros(len(times))
  cx, cy = field_positions(x0, y0, px, py, margin, still, still)
  grow = (half * (1.0 + 0.25 * np.asarray(flash)))[:, None, None]

  def coverage(k, dx, dy):
    return np.clip(0.5 - (np.maximum(np.abs(dx), np.abs(dy)) - grow), 0.0, 1.0)
  if upright:
    return lit_field(height, width, cx, cy, margin, coverage, lambda k: grow, spacing)
  return stamp(height, width, cx, cy, margin, coverage)


# Upright scenes (``upright``): light from above on the still fields (disks, squares;
# the bars' up is in their motion). The upper half of every shape is lit (blended towards white by up to UPRIGHT_LIGHT), the lower half shaded
# (darkened by up to UPRIGHT_SHADE), and each casts a shadow UPRIGHT_SHADOW_DROP
# grid spacings straight below it that darkens the background by UPRIGHT_SHADOW.
UPRIGHT_LIGHT = 0.5
UPRIGHT_SHADE = 0.6
UPRIGHT_SHADOW = 0.6
UPRIGHT_SHADOW_DROP = 0.25
# The period (s) of a bounce of the upright ``up_down`` field.
BOUNCE_PERIOD_SEC = (0.8, 1.2)


def lit_field(height: int, width: int, cx, cy, margin: float, coverage, extent, spacing: float):
  """The masks ``[T, H, W]`` of a field of shapes lit from above: ``cover`` (the shapes'
  coverage, as :func:`stamp`), ``upper`` and ``lower`` (the coverage weighted by how far
  a pixel is above, or below, its shape's centre, in units of ``extent(k)``, the shape's
  vertical half-extent) and ``shadow`` (the coverage dropped ``UPRIGHT_SHADOW_DROP``
  spacings straight down). :func:`paint_lit` paints them."""
  def upper(k, dx, dy):
    return coverage(k, dx, dy) * np.clip(-dy / extent(k), 0.0, 1.0)

  def lower(k, dx, dy):
    return coverage(k, dx, dy) * np.clip(dy / extent(k), 0.0, 1.0)
  drop = UPRIGHT_SHADOW_DROP * spacing
  return {'cover': stamp(height, width, cx, cy, margin, coverage),
          'upper': stamp(height, width, cx, cy, margin, upper),
          'lower': stamp(height, width, cx, cy, margin, lower),
          'shadow': stamp(height, width, cx, np.asarray(cy) + drop, margin, coverage)}


def paint_lit(frames, lit, colours):
  """``frames`` ``[T, H, W, 3]`` with the shapes of ``lit`` (:func:`lit_field`) painted in
  ``colours`` ``[T, 3]``: shadows on the background, then the shapes, lit on top and
  shaded below."""
  cover, upper, lower = (lit[k][..., None] for k in ('cover', 'upper', 'lower'))
  shadow = lit['shadow'][..., None] * (1.0 - cover)
  colours = colours[:, None, None, :]
  frames = frames * (1.0 - UPRIGHT_SHADOW * shadow)
  return (frames * (1.0 - cover) + colours * cover + (1.0 - colours) * UPRIGHT_LIGHT * upper
          - colours * UPRIGHT_SHADE * lower)


def bounce_height(rng, times, speed: float):
  """Height ``[T]`` above the floor of a body thrown up at ``speed`` that falls back under
  gravity and bounces, at a random period in ``BOUNCE_PERIOD_SEC`` and a random phase:
  a parabola per period, rising slower and slower, then falling faster and faster
  until it bounces (``speed`` is the speed at the bounce)."""
  period = rng.uniform(*BOUNCE_PERIOD_SEC)
  phase = np.mod(np.asarray(times) + rng.uniform(0.0, period), period) / period
  return speed * period * phase * (1.0 - phase)


def flash_envelope(times, onsets, length=BRIEF_FLASH_SEC):
  """1 at each onset, decaying linearly to 0 over ``length`` s; max over onsets."""
  age = times[:, None] - np.asarray(onsets)[None, :]
  env = np.where((age >= 0) & (age < length), 1.0 - age / length, 0.0)
  return env.max(axis=1) if env.size else np.zeros_like(times)


# -------------------------------------------------------------------- audio

def coloured_noise(rng, num_samples, exponent):
  """Unit-RMS noise with power spectrum ~ 1 / f**exponent (0 white, 2 brown)."""
  spectrum = np.fft.rfft(rng.normal(size=num_samples))
  freqs = np.arange(len(spectrum), dtype=np.float64)
  freqs[0] = 1.0
  noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=num_samples)
  return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def background_noise(rng, num_samples):
  """The hiss under every soundtrack: random colour and level."""
  return rng.uniform(0.002, 0.02) * coloured_noise(rng, num_samples, rng.uniform(0.0, 2.0))


def fade_in_out(num, fade):
  """An envelope of ``num`` samples that rises over the first ``fade`` and falls over the
  last ``fade`` (at most half each)."""
  env = np.ones(num)
  fade = min(fade, num // 2)
  if fade:
    ramp = np.linspace(0.0, 1.0, fade)
    env[:fade], env[-fade:] = ramp, ramp[::-1]
  return env


def ambient(rng, t, sr):
  """The visual group's soundtrack: modulated coloured noise, independent of the class."""
  noise = coloured_noise(rng, len(t), rng.uniform(0.0, 2.0))
  depth = rng.uniform(0.0, 0.6)
  mod = 1.0 - depth * 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t
                                        + rng.uniform(0, 2 * np.pi)))
  return noise * mod


def whistle(rng, t, sr):
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


def hum(rng, t, sr):
  """A steady low hum: a fundamental with two harmonics and a slight vibrato."""
  f0 = rng.uniform(70.0, 160.0)
  vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t)
  phase = 2 * np.pi * np.cumsum(f0 * vibrato) / sr + rng.uniform(0, 2 * np.pi)
  amps = (1.0, rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.4))
  return sum(a * np.sin((k + 1) * phase) for k, a in enumerate(amps))


def noise_bursts(rng, t, sr):
  """Short noise bursts with random gaps (<= 0.6 s so every window holds several)."""
  out = np.zeros(len(t))
  exponent = rng.uniform(0.0, 1.5)
  start = -rng.uniform(0.0, 0.3)
  while start < t[-1]:
    length = rng.uniform(0.05, 0.15)
    n = int(length * sr)
    burst = coloured_noise(rng, n, exponent) * np.exp(-np.arange(n) / (0.4 * n))
    burst[:int(0.005 * sr)] *= np.linspace(0, 1, int(0.005 * sr))
    first = int(round(start * sr))
    lo, hi = max(first, 0), min(first + n, len(t))
    if hi > lo:
      out[lo:hi] += burst[lo - first:hi - first] * rng.uniform(0.6, 1.0)
    start += length + rng.uniform(0.15, 0.6)
  return out


def place(t, sr, sound, times):
  """``sound`` added at each of ``times`` seconds into a track of ``len(t)`` samples."""
  out = np.zeros(len(t))
  n = len(sound)
  for time in times:
    first = int(round(time * sr))
    lo, hi = max(first, 0), min(first + n, len(t))
    if hi > lo:
      out[lo:hi] += sound[lo - first:hi - first]
  return out


def clicks(rng, t, sr, times):
  """A short damped-sine click (random pitch) at each of ``times`` seconds (brief
  events, and the detection dataset's)."""
  freq = rng.uniform(1500.0, 3000.0)
  n = int(0.04 * sr)
  k = np.arange(n) / sr
  click = np.sin(2 * np.pi * freq * k) * np.exp(-k / 0.008)
  click += 0.3 * rng.normal(size=n) * np.exp(-k / 0.004)
  return place(t, sr, click, times)


def ringing_clicks(rng, t, sr, times, length):
  """A ringing click at each of ``times`` seconds: a tone (random pitch) with a little
  noise, starting at full level and fading linearly to silence over ``length`` s."""
  freq = rng.uniform(1500.0, 3000.0)
  n = int(round(length * sr))
  k = np.arange(n) / sr
  ring = (np.sin(2 * np.pi * freq * k) + 0.3 * rng.normal(size=n)) * (1.0 - k / length)
  return place(t, sr, ring, times)


# The audio group's soundtracks, by class.
CLASS_SOUNDS = {'whistle': whistle, 'hum': hum, 'noise_bursts': noise_bursts}
