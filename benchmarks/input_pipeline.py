r"""Throughput of the training input pipeline vs decoding clips straight from mp4 (PyAV).

  python benchmarks/input_pipeline.py --config configs/kinetics.py:avslowfast_4x16_r50 \
      [--data_dir D] [--num_clips 512] [--baseline_clips 48]

Without ``--data_dir`` it writes a small set of realistic videos (426x320,
10 s, 30 fps, H.264 + AAC) and prepares them (short side 320) in a temporary
folder. Prints one JSON line. ``clips_per_sec_per_core`` divides by the CPU
cores the process may use; the baseline runs on one core (one process), as a
PySlowFast data-loader worker does, so its per-core figure is its rate.

``clips_per_*`` is the pipeline as training runs it on this path
(``read='auto'``). With the shards' frame index (what prepare writes) the
same run also reports, side by side: the pipeline reading whole records
(``records_*``) and reading only each clip's frames and audio spans
(``ranges_*``), both again with ``data.finish_on_device`` (``device_finish_*``:
the host stops after the decode and the audio cut; resize, flip,
normalisation and log-mels run in the train step), and the decode-only bound
(the JPEG decode and crop of the same clips' frames, held in memory:
``decode_only_*``), each measured in turn for ``--rounds`` rounds (medians);
then the megabytes a training
clip reads by range, uses, and reads as a whole record; and the evaluation
pipeline's videos/s (``eval_*``, every view of every video).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import av
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from avslowfast_jax import cli, host_memory  # noqa: E402  # (first: TensorFlow's banners hidden)
import tensorflow as tf  # noqa: E402
from data_pipelines import adapters, augment, errors, fs, input_pipeline, mel_filters, prepare  # noqa: E402
from data_pipelines import records as records_lib  # noqa: E402
from data_pipelines import shards  # noqa: E402
from data_pipelines.video_io import write_video  # noqa: E402


def make_videos(folder: str, num_videos: int, seconds: float = 10.0, width: int = 426,
                height: int = 320, fps: int = 30) -> list:
  """Writes camera-like videos (smooth panning texture, a moving object, sensor noise) with a
  tone + noise soundtrack; returns their paths. Pure noise would make JPEGs (and their
  decoding) far costlier than real footage; flat colour far cheaper."""
  rng = np.random.default_rng(0)
  paths = []
  y, x = np.mgrid[0:height, 0:width]
  for v in range(num_videos):
    cells = (height // 16 + 8, width // 16 + 8)
    small = rng.integers(0, 255, cells + (3,)).astype(np.uint8)
    texture = np.asarray(Image.fromarray(small).resize((cells[1] * 16, cells[0] * 16),
                                                       Image.BICUBIC), np.float32)
    num_frames = int(seconds * fps)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
      dy, dx = int(20 + 20 * np.sin(t / 20)), int(30 + 30 * np.cos(t / 25))
      image = texture[dy:dy + height, dx:dx + width].copy()
      cx, cy = width / 2 + 120 * np.sin(t / 15 + v), height / 2 + 80 * np.cos(t / 11)
      image[(np.abs(x - cx) < 40) & (np.abs(y - cy) < 30)] = (230, 200, 40)
      image += rng.normal(0, 2, image.shape)
      frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    samples = int(seconds * 16000)
    time_axis = np.arange(samples) / 16000
    audio = (0.2 * np.sin(2 * np.pi * (220 + 40 * v) * time_axis)
             + 0.02 * rng.standard_normal(samples))
    path = os.path.join(folder, f'video_{v:03d}.mp4')
    write_video(path, frames, fps, audio.astype(np.float32), 16000, crf=20)
    paths.append(path)
  return paths


def prepare_folder(paths, output_dir, num_workers):
  items = [adapters.VideoItem(p, [i % 4], 'train', os.path.basename(p)[:-4])
           for i, p in enumerate(paths)]
  return prepare.prepare(items, output_dir, name='bench', label_names=['a', 'b', 'c', 'd'],
                         num_workers=num_workers, videos_per_shard=4, verbose=False)


def mean_jpeg_bytes(data_dir):
  """Mean stored frame size (JPEG decode cost grows with it)."""
  files, _ = shards.load_split_files(data_dir, 'train')
  record = next(iter(tf.data.TFRecordDataset(files[0])))
  frames = tf.io.parse_single_example(record, shards.parse_spec())['frames'].numpy()
  return float(np.mean([len(f) for f in frames]))


def _rate(iterator, num_clips, batch_size, check=None):
  """(clips/s, clips per CPU-second) of ``iterator`` after a warm-up of a few batches."""
  for _ in range(3):
    next(iterator)
  start, cpu_start = time.perf_counter(), time.process_time()
  batches = max(1, num_clips // batch_size)
  for _ in range(batches):
    batch = next(iterator)
  elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  if check:
    check(batch)
  # The prefetch buffers keep working after the last batch is taken; the CPU
  # time they spend on later clips is small next to the measured span.
  return batches * batch_size / elapsed, batches * batch_size / cpu


def pipeline_rate(config, data_dir, num_clips, batch_size, read='auto', on_device=False):
  """Clips/s of the real training iterator (``read``: ranges | records | auto); with
  ``on_device`` it stops after the decode (``data.finish_on_device``)."""
  config = config.copy_and_resolve_references()
  config.data.finish_on_device = 'on' if on_device else 'off'
  dataset = input_pipeline.make_train_dataset(config, data_dir, config.data.train_split,
                                              batch_size, seed=0, process_index=0,
                                              process_count=1, read=read)

  def check(batch):
    d = config.data
    if on_device:
      side = input_pipeline.device_window_side(config, data_dir)
      assert batch['frames'].shape[1:] == (d.num_frames * side * side * 3,)
    else:
      assert batch['fast'].shape[1:] == (d.num_frames, d.train_crop_size, d.train_crop_size, 3)
  return _rate(dataset.as_numpy_iterator(), num_clips, batch_size, check)


def decode_only_rate(config, data_dir, num_clips, batch_size):
  """The pipeline's physical bound: the JPEG decode and crop of the same clips' frames (the
  training stream's first clips, their JPEGs already in memory) and nothing else, with the
  training pipeline's parallelism."""
  d = config.data
  files, lengths, offsets = records_lib.host_files(data_dir, d.train_split, 0, 1)
  tables = input_pipeline.index_tables(files, lengths, offsets)
  shard_bytes = [fs.read_bytes(f) for f in files]
  host_seed = 0  # seed 0, host 0, as pipeline_rate's stream
  order = records_lib.epoch_orders(len(tables['file']), host_seed, 0)
  jpegs, crops = [], []
  for example, position in order.take(min(num_clips, 256)).as_numpy_iterator():
    choices = input_pipeline.train_choices(tables['num_frames'][example], position, config,
                                           host_seed)
    data = shard_bytes[tables['file'][example]]
    ids = tables['frame_base'][example] + choices['indices'].numpy()
    jpegs.append([data[o:o + n] for o, n in zip(tables['frame_offset'][ids],
                                               tables['frame_length'][ids])])
    uniforms = choices['uniforms']
    crops.append(augment.train_crop_window(tables['height'][example], tables['width'][example],
                                           d.train_crop_size, choices['short_side'],
                                           uniforms[1], uniforms[2]).numpy())
  dataset = tf.data.Dataset.from_tensor_slices((tf.constant(jpegs), tf.constant(crops))).repeat()
  # One pixel per decoded frame leaves the pipeline: the crops differ in size (they are
  # resized after this point in training), and copying them out is not decode work.
  dataset = dataset.map(
      lambda j, c: augment.decode_jpegs(tf.ensure_shape(j, [d.num_frames]), c)[:, 0, 0, 0],
      num_parallel_calls=d.num_parallel_calls, deterministic=True)
  dataset = dataset.batch(batch_size).prefetch(d.prefetch_batches)
  return _rate(dataset.as_numpy_iterator(), num_clips, batch_size)


def eval_rate(config, data_dir, batch_size):
  """(videos/s, videos per CPU-second) of one pass of the evaluation pipeline over the
  train split (``num_test_clips x num_test_crops`` views per video)."""
  d = config.data
  dataset = input_pipeline.make_eval_dataset(config, data_dir, d.train_split, batch_size,
                                             process_index=0, process_count=1)
  videos = input_pipeline.dataset_info(data_dir)['num_examples'][d.train_split]
  start, cpu_start = time.perf_counter(), time.process_time()
  views = sum(int(b['valid'].sum()) for b in dataset.as_numpy_iterator())
  elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  assert views == videos * d.num_test_clips * d.num_test_crops
  return videos / elapsed, videos / cpu


def _pyav_window(container, stream, start_sec, end_sec):
  """Decodes from the keyframe before ``start_sec`` (a seek) and keeps frames in the window."""
  container.seek(int(max(start_sec - 0.5, 0) * av.time_base), backward=True)
  frames = []
  for frame in container.decode(stream):
    t = float(frame.time)
    if t < start_sec - 1e-4:
      continue
    if t >= end_sec - 1e-4:
      break
    frames.append(frame)
  return frames


def _pyav_audio(container, start_sec, end_sec, config):
  d = config.data
  container.seek(int(max(start_sec - 0.5, 0) * av.time_base), backward=True)
  resampler = av.AudioResampler(format='s16', layout='mono', rate=d.audio.sample_rate)
  pieces, first = [], None
  for frame in container.decode(audio=0):
    if first is None:
      first = float(frame.time)
    for out in resampler.resample(frame):
      pieces.append(out.to_ndarray().reshape(-1))
    if float(frame.time) > end_sec:
      break
  return np.concatenate(pieces).astype(np.float32) / 32768.0, first


def _numpy_log_mel(wave, first, start_sec, config, mel):
  d, a = config.data, config.data.audio
  offset = int(round((start_sec - first) * a.sample_rate))
  length = int(round(d.num_frames * d.sampling_rate / d.fps * a.sample_rate))
  span = np.pad(wave[max(offset, 0):max(offset, 0) + length], (0, length))[:length]
  count = 1 + (length - a.n_fft) // a.hop_length
  window_fn = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(a.n_fft) / a.n_fft)
  framed = np.stack([span[i * a.hop_length:i * a.hop_length + a.n_fft] for i in range(count)])
  power = np.abs(np.fft.rfft(framed * window_fn, axis=1)) ** 2
  return (np.log(power @ mel + a.log_offset) - a.mean) / a.std


def pyav_clip(path, config, rng, mel, faithful=True):
  """One training clip decoded from the mp4 with PyAV, as a PySlowFast loader worker does it.

  ``faithful``: PySlowFast's order of work: every frame of the window is
  converted to RGB at full size, 32 are picked, normalised as float, then
  scale-jittered (bilinear, float), cropped and flipped. Otherwise a lean
  variant: only the 32 picked frames are converted, straight to the jittered
  size by swscale, then cropped, flipped and normalised.
  """
  d = config.data
  window = d.num_frames * d.sampling_rate
  with av.open(path) as container:
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    duration = float(stream.duration * stream.time_base) if stream.duration else 10.0
    start = int(rng.integers(0, max(int(duration * d.fps) - window, 0) + 1))
    start_sec, end_sec = start / d.fps, (start + window) / d.fps
    frames = _pyav_window(container, stream, start_sec, end_sec)
    picks = np.clip(np.arange(d.num_frames) * d.sampling_rate, 0, len(frames) - 1)
    short = int(rng.integers(d.train_jitter_scales[0], d.train_jitter_scales[1] + 1))
    height, width = frames[0].height, frames[0].width
    scale = short / min(height, width)
    new_h, new_w = int(round(height * scale)), int(round(width * scale))
    y = int(rng.integers(0, new_h - d.train_crop_size + 1))
    x = int(rng.integers(0, new_w - d.train_crop_size + 1))
    crop = d.train_crop_size
    if faithful:
      rgb = np.stack([f.to_ndarray(format='rgb24') for f in frames])[picks]
      clip = (rgb.astype(np.float32) / 255.0 - np.float32(d.mean)) / np.float32(d.std)
      clip = tf.image.resize(clip, [new_h, new_w], method='bilinear').numpy()
      clip = clip[:, y:y + crop, x:x + crop]
    else:
      clip = np.stack([frames[k].reformat(width=new_w, height=new_h, format='rgb24').to_ndarray()
                       [y:y + crop, x:x + crop] for k in picks])
      clip = (clip.astype(np.float32) / 255.0 - np.float32(d.mean)) / np.float32(d.std)
    if rng.random() < 0.5:
      clip = clip[:, :, ::-1]
    wave, first = _pyav_audio(container, start_sec, end_sec, config)
  return np.ascontiguousarray(clip), _numpy_log_mel(wave, first, start_sec, config, mel)


def baseline_rate(config, paths, num_clips, faithful=True):
  """(clips/s, clips per CPU-second) of :func:`pyav_clip` in one process."""
  mel = mel_filters.mel_filterbank(config.data.audio.sample_rate, config.data.audio.n_fft,
                             config.data.audio.num_mels)
  rng = np.random.default_rng(0)
  pyav_clip(paths[0], config, rng, mel, faithful)  # warm-up
  start, cpu_start = time.perf_counter(), time.process_time()
  for i in range(num_clips):
    pyav_clip(paths[i % len(paths)], config, rng, mel, faithful)
  return num_clips / (time.perf_counter() - start), num_clips / (time.process_time() - cpu_start)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='configs/kinetics.py:avslowfast_4x16_r50')
  parser.add_argument('--data_dir', default=None, help='prepared data (default: generate)')
  parser.add_argument('--videos', default=None, help='folder of the source mp4s for the baseline')
  parser.add_argument('--num_clips', type=int, default=512)
  parser.add_argument('--baseline_clips', type=int, default=48)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--num_videos', type=int, default=8)
  parser.add_argument('--num_workers', type=int, default=2)
  parser.add_argument('--rounds', type=int, default=5,
                      help='rounds of the side-by-side cases (each figure is their median)')
  parser.add_argument('--bytes_clips', type=int, default=64,
                      help='clips whose bytes read are counted')
  args = parser.parse_args(argv)
  config = cli.load_config_file(args.config)
  config.data.avs_negatives = True
  # As avslowfast_jax.main does: records and frame buffers of megabytes come from the heap.
  host_memory.serve_from_heap(config.data.malloc_mmap_threshold)
  workdir = tempfile.mkdtemp(prefix='input_bench_')
  data_dir, video_dir = args.data_dir, args.videos
  timings = {}
  if data_dir is None:
    video_dir = video_dir or os.path.join(workdir, 'videos')  # the benchmark's own scratch folder
    os.makedirs(video_dir, exist_ok=True)
    t = time.perf_counter()
    make_videos(video_dir, args.num_videos)
    timings['write_videos_sec'] = round(time.perf_counter() - t, 1)
    data_dir = os.path.join(workdir, 'prepared')
    t = time.perf_counter()
    prepare_folder([fs.join(video_dir, f) for f in fs.listdir(video_dir)], data_dir,
                   args.num_workers)
    timings['prepare_sec'] = round(time.perf_counter() - t, 1)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  load_before = os.getloadavg()[0]
  rate, rate_cpu = pipeline_rate(config, data_dir, args.num_clips, args.batch_size)
  # Per core two ways: wall-clock rate / cores (true only on an otherwise idle
  # machine), and clips per CPU-second the process used (robust to other load).
  result = {'config': args.config, 'data_dir': data_dir, 'cores': cores,
            'mean_jpeg_kb': round(mean_jpeg_bytes(data_dir) / 1e3, 1),
            'clips_per_sec': round(rate, 2), 'clips_per_sec_per_core': round(rate / cores, 2),
            'clips_per_cpu_sec': round(rate_cpu, 2)}
  if input_pipeline.index_tables(*records_lib.host_files(
      data_dir, config.data.train_split, 0, 1)) is not None:
    # Side by side in this process: both ways of reading, with and without finishing on the
    # device, and the decode-only bound, measured in turn for --rounds rounds (medians: the
    # machine's speed drifts between seconds); then bytes per clip.
    cases = {
        'records': lambda: pipeline_rate(config, data_dir, args.num_clips, args.batch_size,
                                         read='records'),
        'ranges': lambda: pipeline_rate(config, data_dir, args.num_clips, args.batch_size,
                                        read='ranges'),
        'dev_records': lambda: pipeline_rate(config, data_dir, args.num_clips, args.batch_size,
                                             read='records', on_device=True),
        'dev_ranges': lambda: pipeline_rate(config, data_dir, args.num_clips, args.batch_size,
                                            read='ranges', on_device=True),
        'bound': lambda: decode_only_rate(config, data_dir, args.num_clips, args.batch_size)}
    runs = {name: [] for name in cases}
    for _ in range(args.rounds):
      for name, case in cases.items():
        runs[name].append(case())
    median = {name: tuple(float(np.median([r[i] for r in rs])) for i in (0, 1))
              for name, rs in runs.items()}
    records, records_cpu = median['records']
    ranges, ranges_cpu = median['ranges']
    dev_records_cpu = median['dev_records'][1]
    dev_ranges, dev_ranges_cpu = median['dev_ranges']
    bound, bound_cpu = median['bound']
    sizes = input_pipeline.train_read_bytes(config, data_dir, config.data.train_split,
                                            args.bytes_clips, seed=0)
    result.update(
        records_clips_per_sec=round(records, 2), records_clips_per_cpu_sec=round(records_cpu, 2),
        ranges_clips_per_sec=round(ranges, 2), ranges_clips_per_cpu_sec=round(ranges_cpu, 2),
        decode_only_clips_per_sec=round(bound, 2),
        decode_only_clips_per_cpu_sec=round(bound_cpu, 2),
        records_cpu_rate_vs_decode_only=round(records_cpu / bound_cpu, 3),
        ranges_cpu_rate_vs_decode_only=round(ranges_cpu / bound_cpu, 3),
        ranges_cpu_rate_vs_records=round(ranges_cpu / records_cpu, 3),
        device_finish_records_clips_per_cpu_sec=round(dev_records_cpu, 2),
        device_finish_ranges_clips_per_sec=round(dev_ranges, 2),
        device_finish_ranges_clips_per_cpu_sec=round(dev_ranges_cpu, 2),
        device_finish_records_cpu_rate_vs_decode_only=round(dev_records_cpu / bound_cpu, 3),
        device_finish_ranges_cpu_rate_vs_decode_only=round(dev_ranges_cpu / bound_cpu, 3),
        rounds=args.rounds,
        device_finish_ranges_cpu_rate_vs_decode_only_each_round=[
            round(d[1] / b[1], 3) for d, b in zip(runs['dev_ranges'], runs['bound'])],
        mb_read_per_clip=round(sizes['ranges'] / 1e6, 3),
        mb_used_per_clip=round(sizes['used'] / 1e6, 3),
        mb_whole_record_per_clip=round(sizes['records'] / 1e6, 3),
        read_over_used=round(sizes['ranges'] / sizes['used'], 3))
  videos, videos_cpu = eval_rate(config, data_dir, args.batch_size)
  result.update(eval_views_per_video=config.data.num_test_clips * config.data.num_test_crops,
                eval_videos_per_sec=round(videos, 3),
                eval_videos_per_sec_per_core=round(videos / cores, 3),
                eval_videos_per_cpu_sec=round(videos_cpu, 3))
  if video_dir:
    paths = [fs.join(video_dir, f) for f in fs.listdir(video_dir) if f.endswith('.mp4')]
    base, base_cpu = baseline_rate(config, paths, args.baseline_clips, faithful=True)
    lean, lean_cpu = baseline_rate(config, paths, args.baseline_clips, faithful=False)
    result.update(baseline_pyav_clips_per_sec=round(base, 2),
                  baseline_pyav_clips_per_cpu_sec=round(base_cpu, 2),
                  speedup_per_core=round(rate / cores / base, 2),
                  speedup_per_cpu_sec=round(rate_cpu / base_cpu, 2),
                  lean_pyav_clips_per_sec=round(lean, 2),
                  lean_pyav_clips_per_cpu_sec=round(lean_cpu, 2),
                  speedup_per_cpu_sec_vs_lean=round(rate_cpu / lean_cpu, 2))
  result.update(timings)
  result['load_average_1min_before_after'] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
  print(json.dumps(result))


if __name__ == '__main__':
  errors.run(main)
