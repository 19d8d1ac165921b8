r"""Prepares a folder of videos into TFRecord shards for the input pipeline.

  python -m data_pipelines.prepare --output_dir /data/k400_shards \
      --dataset kinetics --annotations train.csv validate.csv --video_dir /data/k400 \
      --num_workers 16

  python -m data_pipelines.prepare --output_dir D --manifest videos.csv --num_workers 4

Each shard is one unit of work (shard_runner.py): a worker decodes its videos
(decode.py), writes ``<shard>.tmp`` and renames it, writes the shard's frame
index (frame_index.py), then records the shard's report in ``_progress/``. A
rerun skips shards whose progress file exists, so an interrupted job
resumes where it stopped. Bad inputs are skipped and reported,
never fatal. See shards.py for the output format. ``--dataset ava`` hands
over to ava_prepare.py.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from typing import Dict, List, Optional, Sequence

from data_pipelines import adapters, ava_prepare, decode, errors, frame_index, fs, shard_runner
from data_pipelines import shards
from data_pipelines.errors import UserError
from data_pipelines.shard_runner import PrepareOptions


@dataclasses.dataclass
class ShardTask:
  output_dir: str
  name: str
  split: str
  index: int
  count: int
  items: List[adapters.VideoItem]
  options: PrepareOptions


def process_shard(task: ShardTask, progress_queue=None) -> dict:
  """Decodes the videos of one shard and writes it; returns the shard's report.

  Never raises for a bad video: it is recorded with the reason and skipped.
  """
  index = frame_index.Builder()
  written = 0

  def write_video(item, writer):
    nonlocal written
    video = decode.decode_video(item.path, fps=task.options.fps,
                                short_side=task.options.short_side,
                                start_sec=item.start_sec, end_sec=item.end_sec,
                                jpeg_quality=task.options.jpeg_quality,
                                sample_rate=task.options.sample_rate)
    repairs = list(video.repairs)
    if video.num_frames < task.options.min_frames:
      repairs.append(f'{video.num_frames} frames, shorter than a '
                     f'{task.options.min_frames}-frame '
                     f'window: clips repeat the last frame, audio is zero-padded')
    record = shards.serialize_example(video, item)
    index.add(record, video, item)
    writer.write(record)
    written += 1
    return dict(num_frames=video.num_frames, duration_sec=round(video.duration_sec, 3),
                has_audio=video.audio is not None, repairs=repairs)

  final, entries = shard_runner.write_shard(task, task.items, write_video, progress_queue)
  index.write(final)
  return shard_runner.write_progress(task, final, written, entries)


def plan_shards(items: Sequence[adapters.VideoItem], output_dir: str, name: str,
                options: PrepareOptions, videos_per_shard: int = 32,
                num_shards: Optional[Dict[str, int]] = None) -> List[ShardTask]:
  """Splits each split's items (in a fixed order) into contiguous shards.

  The plan depends only on the items and ``videos_per_shard``, not on the
  number of workers, so a resumed run finds the same shards.
  """
  by_split = collections.defaultdict(list)
  for item in items:
    by_split[item.split].append(item)
  tasks = []
  for split in sorted(by_split):
    split_items = sorted(by_split[split], key=lambda it: (it.video_id, it.path))
    count = (num_shards or {}).get(split) or max(1, math.ceil(len(split_items) / videos_per_shard))
    bounds = [round(i * len(split_items) / count) for i in range(count + 1)]
    for index in range(count):
      tasks.append(ShardTask(output_dir, name, split, index, count,
                             split_items[bounds[index]:bounds[index + 1]], options))
  return tasks


def finalize(output_dir: str, name: str, tasks: Sequence[ShardTask], label_names: Sequence[str],
             noun_names: Sequence[str], options: PrepareOptions, elapsed_sec: float) -> dict:
  """Merges the shard reports into ``prepare_report.json`` and writes the metadata files."""
  reports = [shards.read_json(shard_runner.progress_path(output_dir, t.split, t.index))
             for t in tasks]
  splits = collections.OrderedDict()
  for report in sorted(reports, key=lambda r: (r['split'], r['shard'])):
    entry = splits.setdefault(report['split'], {'files': [], 'lengths': [], 'num_bytes': 0})
    entry['files'].append(report['file'])
    entry['lengths'].append(report['num_examples'])
    entry['num_bytes'] += report['num_bytes']
  entries = [e for r in reports for e in r['entries']]
  skipped = [{k: e[k] for k in ('path', 'video_id', 'split', 'reason')}
             for e in entries if e['status'] == 'skipped']
  repaired = [{k: e[k] for k in ('path', 'video_id', 'split', 'repairs')}
              for e in entries if e['status'] == 'written' and e['repairs']]
  summary = {
      'num_inputs': len(entries),
      'num_written': sum(e['status'] == 'written' for e in entries),
      'num_skipped': len(skipped),
      'num_repaired': len(repaired),
      'num_without_audio': sum(e['status'] == 'written' and not e['has_audio'] for e in entries),
      'num_examples': {s: sum(v['lengths']) for s, v in splits.items()},
      'elapsed_sec': round(elapsed_sec, 1),
  }
  report = {'summary': summary, 'skipped': skipped, 'repaired': repaired,
            'options': dataclasses.asdict(options)}
  shards.write_json_atomic(fs.join(output_dir, 'prepare_report.json'), report)
  shards.write_json_atomic(fs.join(output_dir, 'label_map.json'),
                           {'labels': list(label_names), 'nouns': list(noun_names)})
  meta = {'format_version': shards.FORMAT_VERSION, 'name': name,
          'fps': options.fps, 'short_side': options.short_side,
          'audio_sample_rate': options.sample_rate, 'splits': splits}
  shards.write_json_atomic(fs.join(output_dir, 'shards.json'), meta)
  shards.write_tfds_metadata(output_dir, name, {s: v['lengths'] for s, v in splits.items()},
                             {s: v['num_bytes'] for s, v in splits.items()},
                             description=f'AVSlowFast prepared videos ({name})')
  return report


def prepare(items: Sequence[adapters.VideoItem], output_dir: str, *, name: str = 'videos',
            label_names: Sequence[str] = (), noun_names: Sequence[str] = (),
            options: Optional[PrepareOptions] = None, num_workers: int = 0,
            videos_per_shard: int = 32, runner: str = 'local',
            beam_options: Sequence[str] = (), verbose: bool = True) -> dict:
  """Prepares ``items`` into ``output_dir``; returns the report (also in prepare_report.json).

  Resumable: shards already finished by an earlier run are not redone.
  """
  options = options or PrepareOptions()
  fs.makedirs(fs.join(output_dir, '_progress'))
  tasks = plan_shards(items, output_dir, name, options, videos_per_shard)
  todo = shard_runner.pending(tasks, output_dir)
  if verbose and len(todo) < len(tasks):
    print(f'resuming: {len(tasks) - len(todo)} of {len(tasks)} shards already done',
          file=sys.stderr)
  start = time.time()
  shard_runner.run_shards(todo, process_shard, runner=runner, num_workers=num_workers,
                          num_items=sum(len(t.items) for t in todo), beam_options=beam_options)
  report = finalize(output_dir, name, tasks, label_names, noun_names, options, time.time() - start)
  if verbose:
    s = report['summary']
    print(f"prepared {s['num_written']} of {s['num_inputs']} videos into {output_dir} "
          f"({s['num_examples']}); skipped {s['num_skipped']}, repaired {s['num_repaired']} "
          f"({s['num_without_audio']} without audio)", file=sys.stderr)
    for e in report['skipped']:
      print(f"  skipped {e['path']}: {e['reason']}", file=sys.stderr)
    for e in report['repaired']:
      print(f"  repaired {e['path']}: {'; '.join(e['repairs'])}", file=sys.stderr)
    print(f"report: {fs.join(output_dir, 'prepare_report.json')}", file=sys.stderr)
  return report


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--output_dir', required=True)
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--manifest', nargs='+', help='CSV path,label[,start_sec,end_sec][,split]')
  source.add_argument('--dataset', choices=adapters.DATASETS[1:] + ('ava',))
  parser.add_argument('--annotations', nargs='+', default=[],
                      help='annotation files (Kinetics/EPIC/Charades CSVs) or the split folder '
                           '(UCF101, HMDB51)')
  parser.add_argument('--video_dir', default='.')
  parser.add_argument('--split', default=None, help='split name for EPIC/Charades/manifest rows '
                      'that do not name one')
  parser.add_argument('--fold', type=int, default=1, help='UCF101/HMDB51 split number')
  parser.add_argument('--label_map', default=None, help='text file, one class name per line')
  parser.add_argument('--classes', default=None, help='Charades_v1_classes.txt')
  parser.add_argument('--name', default=None, help='dataset name (file prefix)')
  parser.add_argument('--num_workers', type=int, default=max(1, (os.cpu_count() or 2) - 1))
  parser.add_argument('--videos_per_shard', type=int, default=None,
                      help='default 32 (ava: 1, a 15-minute video makes ~110 records)')
  parser.add_argument('--fps', type=float, default=30.0)
  parser.add_argument('--short_side', type=int, default=320)
  parser.add_argument('--jpeg_quality', type=int, default=90)
  parser.add_argument('--sample_rate', type=int, default=16000)
  parser.add_argument('--min_frames', type=int, default=64)
  parser.add_argument('--runner', choices=shard_runner.RUNNERS, default='local')
  ava = parser.add_argument_group('--dataset ava (data_pipelines/ava_prepare.py)')
  ava.add_argument('--ava_groundtruth', nargs='+', default=[], metavar='SPLIT=CSV',
                   help='ground-truth box CSVs, e.g. train=ava_train_v2.2.csv '
                   '(SPLIT=none: a split without one, e.g. a test set)')
  ava.add_argument('--ava_detections', nargs='+', default=[], metavar='SPLIT=CSV',
                   help='detected person boxes (score in the last column); SPLIT=none: '
                   'a split without detections')
  ava.add_argument('--ava_excluded', nargs='+', default=[], metavar='SPLIT=CSV',
                   help='excluded timestamps (evaluation only)')
  ava.add_argument('--ava_segment_sec', type=int, default=8,
                   help='seconds of keyframes per record')
  ava.add_argument('--ava_margin_sec', type=float, default=1.1,
                   help='frames and audio stored before the first and after the last keyframe '
                   'of a record (>= half the longest clip)')
  ava.add_argument('--ava_video_start_sec', type=float, default=900,
                   help='source time of the first frame of the video files (AVA cut: 900)')
  ava.add_argument('--max_boxes', type=int, default=16,
                   help='boxes of each kind kept per keyframe (the rest are counted, dropped); '
                   'at most the config\'s data.ava.max_boxes')
  ava.add_argument('--detection_score_threshold', type=float, default=0.8,
                   help='detected boxes below this score are not stored')
  parser.add_argument('--beam_options', nargs='*', default=[],
                      help='Beam pipeline options in one quoted string after "=" (so that '
                           'they are not read as this command\'s flags), e.g. '
                           '--beam_options="--runner=DataflowRunner --project=P --region=R"')
  args = parser.parse_args(argv)
  for flag, value, ok, expected in (
      ('--fps', args.fps, args.fps > 0, 'a positive frame rate'),
      ('--short_side', args.short_side, args.short_side >= 0,
       'pixels >= 0 (0: the source size)'),
      ('--jpeg_quality', args.jpeg_quality, 1 <= args.jpeg_quality <= 100, '1..100'),
      ('--sample_rate', args.sample_rate, args.sample_rate > 0, 'a positive rate in Hz'),
      ('--min_frames', args.min_frames, args.min_frames >= 0, 'frames >= 0'),
      ('--videos_per_shard', args.videos_per_shard,
       args.videos_per_shard is None or args.videos_per_shard > 0, 'a positive number')):
    if not ok:
      raise UserError(f'{flag} {value}: expected {expected}')
  for flag, paths in (('--manifest', args.manifest or []), ('--annotations', args.annotations),
                      ('--label_map', [args.label_map] if args.label_map else []),
                      ('--classes', [args.classes] if args.classes else []),
                      ('--video_dir', [args.video_dir])):
    for path in paths:
      if not fs.exists(path):
        raise UserError(f'{flag} {path}: no such file or folder')
  if not fs.isdir(args.video_dir):
    raise UserError(f'--video_dir {args.video_dir}: a file, not a folder of videos')
  if fs.exists(args.output_dir) and not fs.isdir(args.output_dir):
    raise UserError(f'--output_dir {args.output_dir}: a file, not a folder')
  if args.dataset == 'ava':
    report = ava_prepare.main_from_args(args)
    print(json.dumps(report['summary']))
    return
  label_names = None
  if args.label_map:
    label_names = [line.strip() for line in fs.read_text(args.label_map).splitlines()
                   if line.strip()]
  if args.manifest:
    items, labels, nouns = adapters.load_dataset('manifest', args.manifest, args.video_dir,
                                                 split=args.split, label_names=label_names)
  else:
    if not args.annotations:
      parser.error(f'--dataset {args.dataset} needs --annotations')
    items, labels, nouns = adapters.load_dataset(args.dataset, args.annotations, args.video_dir,
                                                 split=args.split, fold=args.fold,
                                                 classes_path=args.classes)
  if not items:
    raise UserError(f"{' '.join(args.manifest or args.annotations)}: lists no video; nothing "
                    'to prepare')
  options = PrepareOptions(fps=args.fps, short_side=args.short_side,
                           jpeg_quality=args.jpeg_quality, sample_rate=args.sample_rate,
                           min_frames=args.min_frames)
  report = prepare(items, args.output_dir, name=args.name or args.dataset or 'videos',
                   label_names=labels, noun_names=nouns, options=options,
                   num_workers=args.num_workers, videos_per_shard=args.videos_per_shard or 32,
                   runner=args.runner,
                   beam_options=[o for text in args.beam_options for o in shlex.split(text)])
  print(json.dumps(report['summary']))
  summary = report['summary']
  if not summary['num_written']:
    reasons = sorted({e['reason'] for e in report['skipped']})
    raise UserError(f"none of the {summary['num_inputs']} videos could be prepared "
                    f"(reasons: {'; '.join(reasons[:3])}); see "
                    f"{fs.join(args.output_dir, 'prepare_report.json')}")


if __name__ == '__main__':
  errors.run(main)
