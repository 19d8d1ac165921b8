"""Writing real audiovisual mp4 files with PyAV (H.264 video + AAC audio).

Used by the synthetic dataset generator and by tests that need real files.
"""

from __future__ import annotations

import fractions
import io
from typing import Optional

import av
import numpy as np

from data_pipelines import fs


def write_video(path: str, frames: np.ndarray, fps: int = 30,
                audio: Optional[np.ndarray] = None, sample_rate: int = 16000,
                crf: int = 18) -> None:
  """Writes ``frames`` (uint8 ``[T, H, W, 3]``, RGB) and optional mono ``audio``.

  ``audio`` is float in [-1, 1], shape ``[S]``; it starts at the same instant as
  the first frame. H and W must be even (yuv420p).
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f'{path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}')
  _, height, width, _ = frames.shape
  if height % 2 or width % 2:
    raise ValueError(f'{path}: frame size {width}x{height} must be even for yuv420p')
  if fs.is_remote(path):
    # FFmpeg cannot write gs:// itself: mux into memory, then one upload.
    buffer = io.BytesIO()
    _encode(av.open(buffer, mode='w', format='mp4'), frames, fps, audio, sample_rate, crf)
    with fs.open(path, 'wb') as f:
      f.write(buffer.getvalue())
  else:
    _encode(av.open(path, mode='w'), frames, fps, audio, sample_rate, crf)


def _encode(container, frames, fps, audio, sample_rate, crf) -> None:
  _, height, width, _ = frames.shape
  with container:
    vstream = container.add_stream('libx264', rate=fps)
    vstream.width, vstream.height = width, height
    vstream.pix_fmt = 'yuv420p'
    # mbtree=0: x264's macroblock-tree rate control makes repeated encodes of the
    # same frames differ; without it the files are byte-identical run to run.
    vstream.options = {'crf': str(crf), 'preset': 'veryfast', 'x264-params': 'mbtree=0'}
    astream = None
    if audio is not None:
      astream = container.add_stream('aac', rate=sample_rate)
      astream.layout = 'mono'
    for frame in frames:
      for packet in vstream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
        container.mux(packet)
    for packet in vstream.encode():
      container.mux(packet)
    if astream is not None:
      samples = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
      chunk = 1024
      for start in range(0, len(samples), chunk):
        piece = samples[start:start + chunk][None, :]
        aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format='fltp', layout='mono')
        aframe.sample_rate = sample_rate
        aframe.pts = start
        aframe.time_base = fractions.Fraction(1, sample_rate)
        for packet in astream.encode(aframe):
          container.mux(packet)
      for packet in astream.encode():
        container.mux(packet)
