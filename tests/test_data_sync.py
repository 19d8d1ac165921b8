"""Audio and frames stay synchronised from a real H.264 + AAC mp4 to the model's inputs.

Flashes (bright frames) and clicks (4 ms noise bursts) happen at the same known
instants. After preparation and clip sampling, every flash seen in a clip's
frames must have its click in the clip's log-mel within one hop (16 ms) plus
one video frame. An uncompensated AAC priming delay (1024 samples = 64 ms)
or an off-by-one in the audio span would break it.
"""

import numpy as np
import pytest

from configs import kinetics
from data_pipelines import adapters, input_pipeline, prepare
from data_pipelines.video_io import write_video

FPS = 30
FLASH_FRAMES = (20, 43, 67, 88, 111, 134, 157)  # irregular, so no shift can fake a match


@pytest.fixture(scope='module')
def flash_click_data(tmp_path_factory):
  root = tmp_path_factory.mktemp('sync')
  num_frames = 180
  frames = np.full((num_frames, 48, 64, 3), 30, np.uint8)
  audio = np.zeros(num_frames * 16000 // FPS, np.float32)
  rng = np.random.default_rng(0)
  for k in FLASH_FRAMES:
    frames[k:k + 2] = 250  # two frames, so a stride-2 clip always sees the flash
    start = int(round(k / FPS * 16000))
    audio[start:start + 64] = 0.9 * rng.uniform(-1, 1, 64)
  path = str(root / 'flash_click.mp4')
  write_video(path, frames, FPS, audio, 16000)
  out = str(root / 'prepared')
  items = [adapters.VideoItem(path, [0], split, 'flash_click') for split in ('train', 'test')]
  prepare.prepare(items, out, name='sync', label_names=['a'], num_workers=0,
                  options=prepare.PrepareOptions(short_side=48), verbose=False)
  return out


def _config():
  c = kinetics.get_config('tiny_avslowfast_4x16_r50')  # 32 frames at stride 2, 128 x 80 log-mel
  c.data.train_crop_size, c.data.train_jitter_scales = 32, (40, 48)
  c.data.test_short_side, c.data.test_crop_size = 40, 32
  c.data.num_test_clips, c.data.num_test_crops = 5, 1
  c.model.num_classes = 1
  return c


def _check_clip(fast, spec, config):
  d = config.data
  window_sec = d.num_frames * d.sampling_rate / d.fps
  num_samples = int(round(window_sec * d.audio.sample_rate))
  stft_frames = 1 + (num_samples - d.audio.n_fft) // d.audio.hop_length
  # Time (from the clip start) of the centre of each resampled log-mel frame.
  position = (np.arange(d.audio.num_frames) + 0.5) * stft_frames / d.audio.num_frames - 0.5
  spec_time = (position * d.audio.hop_length + d.audio.n_fft / 2) / d.audio.sample_rate
  energy = spec[:, :, 0].mean(1)
  bright = fast.mean((1, 2, 3)) > 0.5
  onsets = [k for k in range(1, len(bright)) if bright[k] and not bright[k - 1]]
  tolerance = d.audio.hop_length / d.audio.sample_rate + 1.0 / d.fps
  checked = 0
  for k in onsets:
    flash_time = k * d.sampling_rate / d.fps
    # The flash may have begun one frame before the sampled frame that shows it.
    near = np.abs(spec_time - flash_time) < 0.15
    peak = np.argmax(np.where(near, energy, -np.inf))
    assert energy[peak] > np.median(energy) + 1.0, f'no click near the flash at {flash_time:.3f} s'
    assert abs(spec_time[peak] - flash_time) <= tolerance + 1e-6, (
        f'flash at {flash_time:.3f} s, click at {spec_time[peak]:.3f} s')
    checked += 1
  # And every click away from the clip edges has its flash.
  loud = energy > np.median(energy) + 1.0
  flash_times = np.array([k * d.sampling_rate / d.fps for k in onsets] + [-1.0])
  for j in np.flatnonzero(loud):
    if 0.15 < spec_time[j] < window_sec - 0.15:
      assert np.min(np.abs(flash_times - spec_time[j])) < 0.1, (
          f'click at {spec_time[j]:.3f} s without a flash')
  return checked


def test_train_clips_are_in_sync(flash_click_data):
  config = _config()
  iterator = input_pipeline.create_train_iterator(config, flash_click_data, 'train', 8, seed=3,
                                                  process_index=0, process_count=1,
                                                  with_metadata=True)
  batch = next(iterator)
  assert len(set(np.round(batch['clip_start_sec'], 3))) > 3  # different windows
  checked = sum(_check_clip(batch['fast'][i], batch['audio'][i], config) for i in range(8))
  assert checked >= 8


def test_eval_views_are_in_sync(flash_click_data):
  config = _config()
  checked = 0
  for batch in input_pipeline.create_eval_iterator(config, flash_click_data, 'test', 5,
                                                   process_index=0, process_count=1):
    for i in np.flatnonzero(batch['valid']):
      checked += _check_clip(batch['fast'][i], batch['audio'][i], config)
  assert checked >= 5
