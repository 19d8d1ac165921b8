"""Helpers of the data tests: small videos, a prepared folder of them, and a tiny config that
reads it (conftest.py's ``pipeline_dir`` fixture prepares the folder once per session)."""

import numpy as np

from configs import kinetics
from data_pipelines import adapters, prepare
from data_pipelines.video_io import write_video

# The pipeline folder's videos: train videos first, then test videos.
NUM_TRAIN, NUM_TEST = 5, 3


def frames(num, seed, height=48, width=64):
  """``num`` frames of random pixels ``[num, height, width, 3]`` uint8, drawn from ``seed``."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 255, (num, height, width, 3)).astype(np.uint8)


def tone(seconds, freq=440.0):
  """A 16 kHz sine of ``seconds`` at ``freq`` Hz, float32 at amplitude 0.3."""
  t = np.arange(int(seconds * 16000)) / 16000.0
  return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def prepare_pipeline_videos(root) -> str:
  """Writes and prepares ``NUM_TRAIN`` train and ``NUM_TEST`` test videos of random pixels
  and noise under ``root`` (a ``pathlib.Path``); returns the prepared folder.

  Video ``i`` has label ``i % 3``; video 1 (45 frames) is shorter than a 64-frame
  window and video 2 has no audio track. One video per shard, short side 48.
  """
  rng = np.random.default_rng(0)
  items = []
  for i in range(NUM_TRAIN + NUM_TEST):
    num_frames = 45 if i == 1 else 75  # one video shorter than the 64-frame eval window
    pixels = rng.integers(0, 255, (num_frames, 48, 64, 3)).astype(np.uint8)
    noise = (0.2 * rng.standard_normal(num_frames * 16000 // 30)).astype(np.float32)
    audio = None if i == 2 else noise
    path = str(root / f'v{i}.mp4')
    write_video(path, pixels, 30, audio)
    split = 'train' if i < NUM_TRAIN else 'test'
    items.append(adapters.VideoItem(path, [i % 3], split, f'v{i}'))
  out = str(root / 'prepared')
  prepare.prepare(items, out, name='toy', label_names=['a', 'b', 'c'], num_workers=0,
                  videos_per_shard=1, options=prepare.PrepareOptions(short_side=48),
                  verbose=False)
  return out


def pipeline_config(**data):
  """A tiny Kinetics config for the pipeline folder: 8 frames every 4, crops of 32, 3
  classes; ``data`` sets ``config.data`` fields."""
  c = kinetics.get_config('tiny_avslowfast_4x16_r50')
  c.data.num_frames, c.data.sampling_rate, c.model.alpha_f = 8, 4, 4
  c.data.train_crop_size, c.data.train_jitter_scales = 32, (40, 48)
  c.data.test_short_side, c.data.test_crop_size = 40, 32
  c.data.num_test_clips, c.data.num_test_crops = 2, 3
  c.data.audio.num_frames = 32
  c.model.num_classes = 3
  for k, v in data.items():
    c.data[k] = v
  return c
