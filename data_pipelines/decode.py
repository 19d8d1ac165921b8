"""Decoding one source video with PyAV for preparation (frames by timestamp + audio).

A video is decoded once: frames are resampled by their presentation
timestamps to a fixed frame rate (sample-and-hold, so variable frame rate
sources come out evenly spaced), resized to a fixed short side and JPEG
encoded; the audio track of the same container is downmixed to mono,
resampled and kept as int16 with its start time relative to the first output
frame, so frames and audio stay aligned.
"""

from __future__ import annotations

import dataclasses
import io
from typing import List, Optional

import av
import numpy as np

from data_pipelines import fs

# Half a microsecond of slack when comparing timestamps, so a source frame
# whose time equals a target time (up to float rounding) is taken for it.
_EPS = 5e-7


class BadVideoError(Exception):
  """The file cannot be used at all; the message says why (it ends up in the report)."""


@dataclasses.dataclass
class DecodedVideo:
  """One prepared video segment."""
  jpegs: List[bytes]  # one per output frame, frame i shown at i / fps s
  height: int
  width: int
  fps: float
  audio: Optional[np.ndarray]  # int16 [S] mono, or None when there is no usable audio
  audio_sample_rate: int
  audio_start_sec: float  # time of audio sample 0 relative to frame 0
  repairs: List[str]  # what was fixed (no audio, padded audio, ...), for the report

  @property
  def num_frames(self) -> int:
    return len(self.jpegs)

  @property
  def duration_sec(self) -> float:
    return len(self.jpegs) / self.fps


def _output_size(width: int, height: int, short_side: int):
  if short_side <= 0:
    return width, height
  scale = short_side / min(width, height)
  return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def _encode_jpeg(frame: 'av.VideoFrame', width: int, height: int, quality: int) -> bytes:
  image = frame.reformat(width=width, height=height, format='rgb24').to_image()
  buffer = io.BytesIO()
  image.save(buffer, format='JPEG', quality=quality)
  return buffer.getvalue()


def _open(path: str):
  if not fs.exists(path):
    raise BadVideoError('missing file')
  if fs.size(path) == 0:
    raise BadVideoError('zero-byte file')
  try:
    if fs.is_remote(path):
      # FFmpeg cannot read gs:// itself: one request for the whole file, decoded from memory.
      return av.open(io.BytesIO(fs.read_bytes(path)), metadata_errors='ignore')
    return av.open(path, metadata_errors='ignore')
  except Exception as e:  # PyAV raises a family of FFmpeg errors and OSError
    raise BadVideoError(f'unreadable or corrupt container ({type(e).__name__}: {e})') from None


def _decode_frames(path, fps, short_side, start_sec, end_sec, jpeg_quality, repairs):
  """Returns (jpegs, width, height, origin_sec) with frames resampled to ``fps``."""
  container = _open(path)
  with container:
    if not container.streams.video:
      raise BadVideoError('no video stream')
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    if start_sec:
      # Seek to the keyframe before the segment; frames before it are decoded
      # only to know which one is on screen at start_sec.
      container.seek(int(max(start_sec - 1.0, 0.0) * av.time_base), backward=True)
    rate = float(stream.average_rate or stream.guessed_rate or fps)
    jpegs: List[bytes] = []
    size = None
    origin = None
    held = None  # (time, frame, jpeg or None): the frame on screen
    frame_time = None
    counter = 0

    def emit_until(limit):
      # Emits the held frame for every target time before ``limit``.
      nonlocal held
      while True:
        target = origin + len(jpegs) / fps
        if target >= limit - _EPS:
          return
        if end_sec is not None and target >= end_sec - _EPS:
          return
        if held[2] is None:
          held = (held[0], held[1], _encode_jpeg(held[1], size[0], size[1], jpeg_quality))
        jpegs.append(held[2])

    try:
      for frame in container.decode(stream):
        frame_time = float(frame.time) if frame.time is not None else counter / rate
        counter += 1
        if start_sec is not None and frame_time < start_sec - _EPS:
          held = (frame_time, frame, None)
          continue
        if end_sec is not None and frame_time >= end_sec - _EPS:
          break
        if size is None:
          size = _output_size(frame.width, frame.height, short_side)
          origin = start_sec if start_sec is not None else frame_time
          if held is None:
            held = (frame_time, frame, None)
        emit_until(frame_time)
        held = (frame_time, frame, None)
    except BadVideoError:
      raise
    except Exception as e:  # a damaged stream: keep what decoded, say so
      if size is None:
        raise BadVideoError(
            f'video stream could not be decoded ({type(e).__name__}: {e})') from None
      repairs.append(f'video decoding stopped at {frame_time:.2f} s ({type(e).__name__}: {e})')
    if held is None or size is None:
      if held is not None and start_sec is not None:
        # The segment starts after the last frame change: hold that frame.
        size = _output_size(held[1].width, held[1].height, short_side)
        origin = start_sec
      else:
        raise BadVideoError('no decodable video frames' + (
            f' in [{start_sec}, {end_sec}] s' if start_sec is not None else ''))
    # The last frame lasts one source frame period (or until end_sec).
    end = held[0] + 1.0 / rate
    if end_sec is not None:
      end = end_sec
    emit_until(end)
    if not jpegs:
      jpegs.append(_encode_jpeg(held[1], size[0], size[1], jpeg_quality))
  return jpegs, size[0], size[1], origin


def _decode_audio(path, sample_rate, origin, duration, repairs):
  """Mono int16 audio from ``origin`` for ``duration`` seconds and its start offset, or None."""
  container = _open(path)
  with container:
    if not container.streams.audio:
      repairs.append('no audio track: kept with has_audio=False (silent audio, audio_mask=0)')
      return None, 0.0
    stream = container.streams.audio[0]
    if origin > 1.0:
      container.seek(int((origin - 1.0) * av.time_base), backward=True)
    resampler = av.AudioResampler(format='s16', layout='mono', rate=sample_rate)
    pieces = []
    first_time = None
    try:
      for frame in container.decode(stream):
        if frame.time is not None and frame.time > origin + duration + 1.0:
          break
        if first_time is None:
          # Decoded frame times already account for the encoder priming delay
          # (the container's edit list), so this is when the sound is heard.
          first_time = float(frame.time) if frame.time is not None else 0.0
        for out in resampler.resample(frame):
          pieces.append(out.to_ndarray().reshape(-1))
      for out in resampler.resample(None):
        pieces.append(out.to_ndarray().reshape(-1))
    except Exception as e:
      if not pieces:
        repairs.append(
            f'audio track could not be decoded ({type(e).__name__}: {e}): has_audio=False')
        return None, 0.0
      repairs.append(f'audio decoding stopped early ({type(e).__name__}: {e})')
  if not pieces:
    repairs.append('audio track has no samples: kept with has_audio=False')
    return None, 0.0
  audio = np.concatenate(pieces).astype(np.int16)
  start = first_time - origin
  if start < 0:  # drop what precedes the first frame (segments, early audio)
    drop = int(np.floor(-start * sample_rate))
    audio = audio[drop:]
    start += drop / sample_rate
  needed = int(np.ceil((duration - start) * sample_rate))
  if needed > len(audio):
    missing = (needed - len(audio)) / sample_rate
    if missing > 0.05:  # AAC frame granularity makes a few ms routine
      repairs.append(f'audio {missing:.2f} s shorter than video: zero-padded')
    audio = np.pad(audio, (0, needed - len(audio)))
  else:
    audio = audio[:max(needed, 0)]
  return audio, float(start)


def decode_video(path: str, fps: float = 30.0, short_side: int = 320,
                 start_sec: Optional[float] = None, end_sec: Optional[float] = None,
                 jpeg_quality: int = 90, sample_rate: int = 16000) -> DecodedVideo:
  """Decodes ``path`` (optionally only ``[start_sec, end_sec)``) for preparation.

  Raises :class:`BadVideoError` for files that cannot be used (missing,
  zero-byte, corrupt, truncated before any frame, no video stream); fixable
  problems are listed in ``DecodedVideo.repairs`` instead.
  """
  repairs: List[str] = []
  jpegs, width, height, origin = _decode_frames(path, fps, short_side, start_sec, end_sec,
                                                jpeg_quality, repairs)
  audio, audio_start = _decode_audio(path, sample_rate, origin, len(jpegs) / fps, repairs)
  return DecodedVideo(jpegs=jpegs, height=height, width=width, fps=float(fps), audio=audio,
                      audio_sample_rate=sample_rate, audio_start_sec=audio_start,
                      repairs=repairs)
