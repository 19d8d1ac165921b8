r"""Throughput of dataset preparation (data_pipelines/prepare.py): videos per CPU-second.

  python benchmarks/prepare.py [--num_videos 8] [--seconds 10] [--size 340x256] \
      [--short_side 320] [--num_workers 0] [--output_dir DIR]

Writes ``--num_videos`` camera-like H.264 + AAC videos (the generator of
benchmarks/input_pipeline.py) in a temporary folder, prepares them with the
project's default options (30 fps, JPEG quality 90, 16 kHz audio; short side
``--short_side``), and prints one JSON line. ``videos_per_cpu_sec`` counts
the CPU time of the process and its workers, so it stays meaningful on a
machine shared with other jobs; ``videos_per_sec_per_core`` divides the wall
rate by the cores the process may use (true only on an idle machine). The
Kinetics-400 projection is ``240000 / videos_per_cpu_sec`` CPU-seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.input_pipeline import make_videos  # noqa: E402
from data_pipelines import adapters, errors, fs, prepare  # noqa: E402

KINETICS_400_VIDEOS = 240_000


def _cpu_seconds() -> float:
  """CPU time (user + system) of this process and of its finished worker processes."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _size(text: str):
  width, height = (int(v) for v in text.lower().split('x'))
  return width, height


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--num_videos', type=int, default=8)
  parser.add_argument('--seconds', type=float, default=10.0)
  parser.add_argument('--size', type=_size, default=(340, 256), help='WIDTHxHEIGHT, both even')
  parser.add_argument('--short_side', type=int, default=prepare.PrepareOptions.short_side)
  parser.add_argument('--num_workers', type=int, default=0,
                      help='0: prepare in this process (one core); N: N worker processes')
  parser.add_argument('--videos_per_shard', type=int, default=4)
  parser.add_argument('--output_dir', default=None, help='where to prepare (default: a temporary '
                      'folder; may be gs://)')
  args = parser.parse_args(argv)
  workdir = tempfile.mkdtemp(prefix='prepare_bench_')
  width, height = args.size
  os.makedirs(os.path.join(workdir, 'videos'))
  t = time.perf_counter()
  paths = make_videos(os.path.join(workdir, 'videos'), args.num_videos, seconds=args.seconds,
                      width=width, height=height)
  write_sec = time.perf_counter() - t
  items = [adapters.VideoItem(p, [i % 4], 'train', f'video_{i:03d}') for i, p in enumerate(paths)]
  output_dir = args.output_dir or os.path.join(workdir, 'prepared')
  options = prepare.PrepareOptions(short_side=args.short_side)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  load_before = os.getloadavg()[0]
  cpu_start, start = _cpu_seconds(), time.perf_counter()
  report = prepare.prepare(items, output_dir, name='bench', label_names=['a', 'b', 'c', 'd'],
                           options=options, num_workers=args.num_workers,
                           videos_per_shard=args.videos_per_shard, verbose=False)
  wall = time.perf_counter() - start
  cpu = _cpu_seconds() - cpu_start
  written = report['summary']['num_written']
  if written != args.num_videos:
    raise RuntimeError(f'prepared {written} of {args.num_videos} videos: {report["skipped"]}')
  meta = fs.read_json(fs.join(output_dir, 'shards.json'))
  out_bytes = sum(entry['num_bytes'] for entry in meta['splits'].values())
  source_bytes = sum(os.path.getsize(p) for p in paths)
  per_cpu_sec = written / cpu
  result = {
      'videos': written, 'seconds_per_video': args.seconds, 'source_size': f'{width}x{height}',
      'short_side': args.short_side, 'num_workers': args.num_workers, 'cores': cores,
      'write_videos_sec': round(write_sec, 1), 'prepare_wall_sec': round(wall, 3),
      'prepare_cpu_sec': round(cpu, 3), 'videos_per_sec': round(written / wall, 3),
      'videos_per_sec_per_core': round(written / wall / cores, 3),
      'videos_per_cpu_sec': round(per_cpu_sec, 3),
      'source_mb_per_video': round(source_bytes / written / 1e6, 2),
      'prepared_mb_per_video': round(out_bytes / written / 1e6, 2),
      'kinetics400_cpu_hours': round(KINETICS_400_VIDEOS / per_cpu_sec / 3600, 1),
      'kinetics400_prepared_tb': round(KINETICS_400_VIDEOS * out_bytes / written / 1e12, 2),
      'load_average_1min_before_after': [round(load_before, 2), round(os.getloadavg()[0], 2)],
  }
  print(json.dumps(result))
  return result


if __name__ == '__main__':
  errors.run(main)
