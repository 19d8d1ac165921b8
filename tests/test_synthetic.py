"""Tests of the built-in audiovisual dataset (data_pipelines/synthetic.py).

The design claims are checked with simple statistics: inside each group of
classes, the modality a class does not need must not separate the classes (a
leave-one-out nearest-centroid classifier stays near chance), while the
modality it needs does. A leak in the generator (say, the hum videos drawing a
different disk) makes these assertions fail.
"""

import csv
import hashlib
import json
import os

import av
import librosa
import numpy as np
import pytest

from data_pipelines import synthetic, synthetic_scenes
from data_pipelines.errors import UserError

FPS, SR, DURATION, SIZE = 30, 16000, 3.0, (96, 72)


# ---------------------------------------------------------------- features

def _visual_features(frames):
  """Per-video statistics: mean colour, motion energy, motion-centroid spread, flashes, and
  the direction of motion."""
  f = frames.astype(np.float32) / 255.0
  colour = f.mean(axis=(1, 2))  # [T, 3]
  diff = np.abs(f[1:] - f[:-1]).mean(-1)  # [T-1, H, W]
  energy = diff.mean(axis=(1, 2))
  # Where the motion is: the centroid of clearly changing pixels per frame.
  weight = diff * (diff > 0.1)
  total = weight.sum(axis=(1, 2))
  moving = total > 0
  yy, xx = np.mgrid[0:f.shape[1], 0:f.shape[2]]
  cx = (weight * xx).sum(axis=(1, 2))[moving] / total[moving] / f.shape[2]
  cy = (weight * yy).sum(axis=(1, 2))[moving] / total[moving] / f.shape[1]
  spread = [cx.std() if cx.size else 0.0, cy.std() if cy.size else 0.0]
  jump = np.diff(colour.mean(-1)).max()
  return np.concatenate([colour.mean(0), colour.std(0), [energy.mean(), energy.std(), energy.max()],
                         spread, [jump], _motion_direction(frames)])


def _motion_direction(frames, max_lag=6, max_shift=6, border=8):
  """How well the picture a few frames later is the picture shifted along x, and along y.

  ``sqrt(-log(err_x / err_0))`` and the same for y, on frames minus their median
  (the still background): ``err_0`` is the mean absolute difference of two
  frames ``lag`` apart, ``err_x`` (``err_y``) the smallest
  one after shifting the first by a whole number of pixels (up to
  ``max_shift``) along x (y); averaged over frame pairs, and the best lag
  taken (the one whose motion is closest to whole pixels). A field sliding
  along x gives a clearly positive first value, one sliding along y a
  positive second, a field spinning in place (or a still one) neither.
  """
  grey = frames.astype(np.float32).mean(-1) / 255.0
  grey -= np.median(grey, axis=0)  # what changes: the background stays put
  # A 3x3 box blur: the pixel noise would otherwise swamp faint, low-contrast fields.
  pad = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode='edge')
  grey = sum(pad[:, i:i + grey.shape[1], j:j + grey.shape[2]]
             for i in range(3) for j in range(3)) / 9.0
  h, w = grey.shape[1:]
  inner = (slice(border, h - border), slice(border, w - border))
  best = np.zeros(2)
  for lag in range(1, max_lag + 1):
    ratios = []
    for t in range(0, len(grey) - lag, 3):
      a, b = grey[t], grey[t + lag][inner]
      err0 = np.abs(b - a[inner]).mean() + 1e-6
      err = [min(np.abs(b - np.roll(a, s, axis=axis)[inner]).mean()
                 for s in range(-max_shift, max_shift + 1) if s) + 1e-6 for axis in (1, 0)]
      ratios.append(np.log(np.asarray(err) / err0))
    best = np.minimum(best, np.mean(ratios, axis=0))
  return np.sqrt(-best)  # >= 0; the square root evens out the spread of fast and slow fields


def _audio_features(audio):
  """Per-video statistics of the log-mel spectrogram: loudness, shape, spread per band."""
  mel = librosa.feature.melspectrogram(y=audio, sr=SR, n_fft=512, hop_length=256, n_mels=24)
  logmel = np.log(mel + 1e-8)
  mean = logmel.mean(1)
  # Loudness is a nuisance: the spectral shape is the mean relative to its peak.
  return np.concatenate([[mean.max()], mean - mean.max(), logmel.std(1)])


def _loo_nearest_centroid(features, labels):
  """Leave-one-out accuracy of a nearest-centroid classifier on z-scored features."""
  x = np.asarray(features, np.float64)
  x = (x - x.mean(0)) / (x.std(0) + 1e-9)
  labels = np.asarray(labels)
  classes = np.unique(labels)
  correct = 0
  for i in range(len(x)):
    keep = np.arange(len(x)) != i
    centroids = np.stack([x[keep & (labels == c)].mean(0) for c in classes])
    correct += classes[np.argmin(((centroids - x[i]) ** 2).sum(1))] == labels[i]
  return correct / len(x)


def _max_pairwise_accuracy(features, labels):
  """The best leave-one-out accuracy over all pairs of classes (chance: 1/2).

  Pairs, not the whole group, so that a leak that gives away a single class
  stands out instead of being averaged with the classes it does not affect.
  """
  features, labels = np.asarray(features), np.asarray(labels)
  best = 0.0
  for i, a in enumerate(np.unique(labels)):
    for b in np.unique(labels)[i + 1:]:
      pair = (labels == a) | (labels == b)
      best = max(best, _loo_nearest_centroid(features[pair], labels[pair]))
  return best


def _onsets(signal, rel):
  """Indices where ``signal`` rises above ``rel`` times its maximum."""
  above = signal > rel * signal.max()
  return np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))


def _av_offset(frames, audio):
  """Mean distance (s) from each sound onset to the nearest visual flash onset."""
  brightness = frames.astype(np.float32).mean(axis=(1, 2, 3))
  flashes = _onsets(np.maximum(np.diff(brightness, prepend=brightness[0]), 0.0), 0.5) / FPS
  hop = SR // FPS
  n = len(audio) // hop
  envelope = np.abs(audio[:n * hop]).reshape(n, hop).max(1)
  clicks = _onsets(envelope, 0.5)
  # A click in the first or last frames may have its flash onset outside the
  # video (before frame 0 or after the last one): judge the clicks in between.
  clicks = clicks[(clicks >= 3) & (clicks < n - 3)] / FPS
  assert flashes.size and clicks.size
  return np.mean([np.abs(flashes - t).min() for t in clicks])


def _render_group(modality, per_class):
  names = [c.name for c in synthetic.CLASSES if c.modality == modality]
  examples, labels = [], []
  for name in names:
    index = synthetic.CLASS_NAMES.index(name)
    for i in range(per_class):
      # Seeds disjoint from the generate() tests; one stream per example.
      rng = synthetic.example_rng(1234, index, i)
      examples.append(synthetic.render_example(name, rng, size=SIZE, duration_sec=DURATION,
                                               fps=FPS, sample_rate=SR))
      labels.append(name)
  return examples, labels


# ---------------------------------------------------------------- the design

def test_class_table():
  modalities = [c.modality for c in synthetic.CLASSES]
  assert 6 <= len(synthetic.CLASSES) <= 8
  assert len(set(synthetic.CLASS_NAMES)) == len(synthetic.CLASS_NAMES)
  for modality in ('visual', 'audio', 'audiovisual'):
    assert modalities.count(modality) >= 2


def test_audio_classes_differ_only_in_sound():
  examples, labels = _render_group('audio', per_class=16)
  visual = [_visual_features(f) for f, _ in examples]
  audio = [_audio_features(a) for _, a in examples]
  # The picture must not tell any two of the sounds apart (chance: 1/2)...
  assert _max_pairwise_accuracy(visual, labels) < 0.85
  # ...while the spectrum does.
  assert _loo_nearest_centroid(audio, labels) > 0.9


def test_leak_check_catches_a_leak(monkeypatch):
  """The statistic above is not blind: a hum whose disks slide along x is caught."""
  render, disk_field = synthetic.render_example, synthetic_scenes.disk_field

  def sliding_disks(rng, times, height, width, upright=False):
    del upright  # the default scenes'
    short = min(height, width)
    spacing, radius = 0.34 * short, 0.28 * 0.34 * short
    margin = radius + 2
    x0, y0, px, py = synthetic_scenes.field_grid(rng, height, width, spacing, margin)
    cx, cy = synthetic_scenes.field_positions(x0, y0, px, py, margin, 1.5 * spacing * times,
                                              np.zeros(len(times)))
    return synthetic_scenes.stamp(height, width, cx, cy, margin, lambda k, dx, dy: np.clip(
        0.5 - (np.sqrt(dx ** 2 + dy ** 2) - radius), 0.0, 1.0))

  def leaky_render(name, rng, **kwargs):
    monkeypatch.setattr(synthetic_scenes, 'disk_field',
                        sliding_disks if name == 'hum' else disk_field)
    return render(name, rng, **kwargs)

  monkeypatch.setattr(synthetic, 'render_example', leaky_render)
  examples, labels = _render_group('audio', per_class=16)
  assert _max_pairwise_accuracy([_visual_features(f) for f, _ in examples], labels) >= 0.85


def test_visual_classes_differ_only_in_motion():
  examples, labels = _render_group('visual', per_class=16)
  audio = [_audio_features(a) for _, a in examples]
  assert _max_pairwise_accuracy(audio, labels) < 0.85
  # Whether the picture moves as a whole along x, along y, or neither (the
  # bars spin in place) is the direct signature of the three classes.
  assert _loo_nearest_centroid([_motion_direction(f) for f, _ in examples], labels) > 0.9


def test_audiovisual_classes_need_both():
  examples, labels = _render_group('audiovisual', per_class=16)
  visual = [_visual_features(f) for f, _ in examples]
  audio = [_audio_features(a) for _, a in examples]
  # Chance is 1/2: neither stream alone separates in-sync from out-of-sync.
  assert _max_pairwise_accuracy(visual, labels) < 0.85
  assert _max_pairwise_accuracy(audio, labels) < 0.85
  # Their alignment does, by a wide margin (>= 0.5 s apart when out of sync).
  offsets = np.array([_av_offset(f, a) for f, a in examples])
  in_sync = np.array(labels) == 'click_in_sync'
  assert offsets[in_sync].max() < 0.1
  assert offsets[~in_sync].min() > 0.4


def _event_lengths(frames, audio):
  """Median time (s) the flashes and the clicks stay above a fifth of their peak."""
  swell = frames.astype(np.float32).mean(axis=(1, 2, 3))
  swell -= np.median(swell)
  hop = SR // FPS
  n = len(audio) // hop
  loud = np.sqrt(np.mean(audio[:n * hop].reshape(n, hop) ** 2, axis=1))
  loud -= np.median(loud)

  def runs(signal):
    above = np.concatenate([[False], signal > 0.2 * signal.max(), [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    return np.median(edges[1::2] - edges[0::2]) / FPS
  return runs(swell), runs(loud)


@pytest.mark.parametrize('events,low,high', [('ringing', 0.6 * 0.4, 0.4 + 1.5 / FPS),
                                             ('brief', 0.5 / FPS, 0.133 + 1.5 / FPS)])
def test_sync_events_last_as_long_as_their_kind(events, low, high):
  # Ringing events last long enough for a pathway sampled every 0.53 s to see each
  # flash and click; brief ones are a 4-frame flash and a 40 ms click.
  for index in range(3):
    frames, audio = synthetic.render_example(
        'click_in_sync', synthetic.example_rng(5, 6, index), size=SIZE, duration_sec=DURATION,
        fps=FPS, sample_rate=SR, sync_events=events)
    flash, click = _event_lengths(frames, audio)
    assert low <= flash <= high
    assert low <= click <= high


def test_render_is_a_function_of_the_rng():
  a = synthetic.render_example('whistle', synthetic.example_rng(0, 3, 0))
  b = synthetic.render_example('whistle', synthetic.example_rng(0, 3, 0))
  c = synthetic.render_example('whistle', synthetic.example_rng(1, 3, 0))
  assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])
  frames, audio = a
  assert frames.shape == (90, 72, 96, 3) and frames.dtype == np.uint8
  assert audio.shape == (48000,) and audio.dtype == np.float32
  assert np.abs(audio).max() <= 1.0


def test_unknown_class_and_odd_size_are_rejected(tmp_path):
  with pytest.raises(UserError, match='unknown class'):
    synthetic.render_example('barking', np.random.default_rng(0))
  with pytest.raises(UserError, match='even'):
    synthetic.generate(str(tmp_path), 2, size=(95, 72), progress=False)
  with pytest.raises(UserError, match="unknown sync_events 'long'"):
    synthetic.generate(str(tmp_path), 2, progress=False, sync_events='long')


# ---------------------------------------------------------------- the files

def _decode(path):
  """Decoded frames and audio of a file, plus its stream parameters."""
  with av.open(path) as container:
    vstream, astream = container.streams.video[0], container.streams.audio[0]
    info = {
      'video_codec': vstream.codec_context.name, 'fps': float(vstream.average_rate),
      'width': vstream.width, 'height': vstream.height,
      'audio_codec': astream.codec_context.name, 'sample_rate': astream.rate,
      'channels': astream.codec_context.layout.nb_channels,
    }
    frames = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(vstream)])
  with av.open(path) as container:
    audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)[0]
  return frames, audio, info


def _read_manifest(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def test_generate_writes_decodable_deterministic_dataset(tmp_path):
  first, second = str(tmp_path / 'a'), str(tmp_path / 'b')
  manifest = synthetic.main(['--output_dir', first, '--num_videos', '2', '--seed', '7',
                             '--no_progress'])
  assert manifest == os.path.join(first, 'manifest.csv')
  # Two rendering processes: the same files as one (each video has its own seed).
  synthetic.generate(second, num_videos_per_class=2, seed=7, progress=False, num_workers=2)

  with open(manifest) as f:
    assert f.readline().strip() == 'path,label,split'
  rows = _read_manifest(manifest)
  assert [r['label'] for r in rows] == [n for n in synthetic.CLASS_NAMES for _ in range(2)]
  assert [r['split'] for r in rows] == ['train', 'validation'] * len(synthetic.CLASS_NAMES)
  for r in rows:
    assert not os.path.isabs(r['path']) and os.path.isfile(os.path.join(first, r['path']))

  with open(os.path.join(first, 'classes.json')) as f:
    info = json.load(f)
  assert [(c['name'], c['modality']) for c in info['classes']] == [
      (c.name, c.modality) for c in synthetic.CLASSES]

  # Same seed: same manifest, same samples, same pixels. The libx264 build
  # here is not bit-exact from run to run with its default mb-tree rate control
  # (measured: some macroblocks differ, up to about one grey level on average,
  # the size of the crf-18 coding error itself; other videos differ by tens of
  # levels), so pixels are compared within that.
  with open(os.path.join(second, 'manifest.csv')) as f, open(manifest) as g:
    assert f.read() == g.read()
  audio_sums = set()
  for r in rows:
    frames_a, audio_a, _ = _decode(os.path.join(first, r['path']))
    frames_b, audio_b, _ = _decode(os.path.join(second, r['path']))
    assert np.array_equal(audio_a, audio_b)
    assert np.abs(frames_a.astype(np.float32) - frames_b).mean() < 3.0
    audio_sums.add(hashlib.sha1(audio_a.tobytes()).hexdigest())
  assert len(audio_sums) == len(rows)  # every video is different

  # Real H.264 + AAC files with the promised geometry and durations.
  offsets = {}
  for r in rows:
    frames, audio, meta = _decode(os.path.join(first, r['path']))
    assert meta == {'video_codec': 'h264', 'fps': 30.0, 'width': 96, 'height': 72,
                    'audio_codec': 'aac', 'sample_rate': 16000, 'channels': 1}
    assert frames.shape == (90, 72, 96, 3)
    assert abs(len(audio) / SR - DURATION) < 0.1
    if r['label'].startswith('click_'):
      offsets[r['path']] = (r['label'], _av_offset(frames, audio))
  # The audiovisual alignment survives encoding (no AAC priming shift).
  for label, offset in offsets.values():
    assert (offset < 0.1) if label == 'click_in_sync' else (offset > 0.4)


def test_other_seed_changes_the_videos(tmp_path):
  a = synthetic.generate(str(tmp_path / 'a'), 1, seed=0, classes=['hum'], val_fraction=0,
                         progress=False)
  b = synthetic.generate(str(tmp_path / 'b'), 1, seed=1, classes=['hum'], val_fraction=0,
                         progress=False)
  rows = _read_manifest(a)
  assert rows == _read_manifest(b) == [
      {'path': 'videos/hum/hum_0000.mp4', 'label': 'hum', 'split': 'train'}]
  frames_a, audio_a, _ = _decode(str(tmp_path / 'a' / rows[0]['path']))
  frames_b, audio_b, _ = _decode(str(tmp_path / 'b' / rows[0]['path']))
  assert np.abs(frames_a.astype(np.float32) - frames_b).mean() > 10.0
  assert not np.allclose(audio_a, audio_b)


@pytest.mark.parametrize('num, fractions, expected', [
  (20, (0.2, 0.0), (16, 4, 0)),
  (2, (0.2, 0.0), (1, 1, 0)),
  (10, (0.2, 0.1), (7, 2, 1)),
  (3, (0.2, 0.1), (1, 1, 1)),
])
def test_split_counts(num, fractions, expected):
  assert synthetic.split_counts(num, *fractions) == expected


def test_split_counts_need_a_training_video():
  with pytest.raises(UserError, match='no training video'):
    synthetic.split_counts(2, 0.5, 0.5)


# ------------------------------------------------------- upright scenes

# The default rendering of every class (both kinds of sync events), hashed before the
# upright option existed: the option leaves the default dataset as it was.
_DEFAULT_RENDER_SHA1 = 'b4a3611a534d04c100cadab9dee690cce5bf621e'


def test_default_scenes_are_as_before_the_upright_option():
  digest = hashlib.sha1()
  for index, name in enumerate(synthetic.CLASS_NAMES):
    for events in ('brief', 'ringing'):
      frames, audio = synthetic.render_example(name, synthetic.example_rng(7, index, 0),
                                               size=(32, 24), duration_sec=2.2,
                                               sync_events=events)
      digest.update(frames.tobytes())
      digest.update(np.round(audio * 32767).astype(np.int16).tobytes())
  assert digest.hexdigest() == _DEFAULT_RENDER_SHA1


def _up_score(frames):
  """The skewness of the vertical brightness derivative (each frame's mean, the background
  gradient, removed): positive where shapes are lit from above (a slow darkening down
  through each shape, a sharp step back to the background below its shadow)."""
  grey = frames.astype(np.float32).mean(-1) / 255.0
  dy = np.diff(grey, axis=1)
  dy -= dy.mean(axis=(1, 2), keepdims=True)
  return float(np.mean(dy ** 3) / np.mean(dy ** 2) ** 1.5)


@pytest.mark.parametrize('upright', [False, True])
def test_upright_still_scenes_have_an_up_and_default_ones_none(upright):
  # Which of the four quarter turns of a clip of disks or squares is upright: told by
  # the pictures in upright scenes (lit from above), a guess (1 in 4) in default ones.
  found, scores = [], []
  for index, spec in enumerate(synthetic.CLASSES):
    if spec.modality == 'visual':
      continue
    for video in range(3):
      frames, _ = synthetic.render_example(spec.name, synthetic.example_rng(11, index, video),
                                           size=(48, 48), duration_sec=1.0, upright=upright)
      turned = [_up_score(np.rot90(frames, k, axes=(1, 2))) for k in range(4)]
      found.append(int(np.argmax(turned)) == 0)
      scores.append(turned[0])
  if upright:
    assert np.mean(found) >= 0.9 and np.mean(scores) > 0.8, (found, scores)
  else:
    assert np.mean(found) < 0.6 and abs(np.mean(scores)) < 0.5, (found, scores)


def test_upright_bars_are_unlit():
  # The visual classes' up is in their motion only: their pictures are the default ones
  # but for the up_down field's path.
  for name in ('left_right', 'rotating'):
    index = synthetic.CLASS_NAMES.index(name)
    default, _ = synthetic.render_example(name, synthetic.example_rng(2, index, 0),
                                          size=(32, 24), duration_sec=1.0)
    upright, _ = synthetic.render_example(name, synthetic.example_rng(2, index, 0),
                                          size=(32, 24), duration_sec=1.0, upright=True)
    assert np.array_equal(default, upright)


def test_upright_up_down_is_thrown_up_and_falls_back():
  times = np.arange(300) / 100.0
  height = synthetic_scenes.bounce_height(np.random.default_rng(0), times, speed=20.0)
  period = synthetic_scenes.BOUNCE_PERIOD_SEC
  assert height.min() >= 0.0
  assert 20.0 * period[0] / 4 * 0.98 <= height.max() <= 20.0 * period[1] / 4
  velocity = np.diff(height) * 100.0
  # Gravity: the velocity falls at a constant rate, but at the bounce (up at full speed).
  accel = np.diff(velocity) * 100.0
  gravity = np.median(accel)
  assert gravity < 0 and np.mean(np.isclose(accel, gravity, rtol=1e-6)) > 0.9
  assert np.sum(accel > 1000.0) >= 2  # a bounce in each period
  # The rendered field moves along y only, as the default up_down.
  frames, _ = synthetic.render_example('up_down', synthetic.example_rng(3, 1, 0), size=SIZE,
                                       duration_sec=DURATION, upright=True)
  along_x, along_y = _motion_direction(frames)
  assert along_y > 2 * along_x


def test_generate_upright_says_so(tmp_path):
  synthetic.main(['--output_dir', str(tmp_path), '--num_videos', '1', '--classes', 'up_down',
                  '--val_fraction', '0', '--size', '32x24', '--duration_sec', '1',
                  '--upright', '--no_progress'])
  with open(tmp_path / 'classes.json') as f:
    info = json.load(f)
  assert info['settings']['upright'] is True
  assert 'gravity' in info['classes'][0]['description']
  frames, _, _ = _decode(str(tmp_path / 'videos' / 'up_down' / 'up_down_0000.mp4'))
  assert frames.shape == (30, 24, 32, 3)
