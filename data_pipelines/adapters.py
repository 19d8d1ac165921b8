"""Turning annotation files into a list of video segments to prepare.

Each adapter reads a dataset's own annotation format and returns
``(items, label_names)``; ``items`` are :class:`VideoItem` and labels are
indices into ``label_names``. ``noun_names`` (EPIC-Kitchens) go in a second
list. Missing video files are kept as items: preparation reports them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from data_pipelines import fs
from data_pipelines.errors import UserError

VIDEO_EXTENSIONS = ('.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v')

# Paper appendix B: the 32 Kinetics-Sounds classes still in Kinetics-400.
KINETICS_SOUNDS_CLASSES = (
    'blowing nose', 'blowing out candles', 'bowling', 'chopping wood', 'dribbling basketball',
    'laughing', 'mowing lawn', 'playing accordion', 'playing bagpipes', 'playing bass guitar',
    'playing clarinet', 'playing drums', 'playing guitar', 'playing harmonica',
    'playing keyboard', 'playing organ', 'playing piano', 'playing saxophone',
    'playing trombone', 'playing trumpet', 'playing violin', 'playing xylophone',
    'ripping paper', 'shoveling snow', 'shuffling cards', 'singing', 'stomping grapes',
    'strumming guitar', 'tap dancing', 'tapping guitar', 'tapping pen', 'tickling')

DATASETS = ('manifest', 'kinetics', 'kinetics_sounds', 'epic_kitchens_55', 'charades', 'ucf101',
            'hmdb51')


@dataclasses.dataclass
class VideoItem:
  """One video segment to prepare."""
  path: str
  labels: List[int]  # indices into the label map ([] when unlabelled, e.g. a test split)
  split: str
  video_id: str
  start_sec: Optional[float] = None
  end_sec: Optional[float] = None
  noun: int = -1  # EPIC-Kitchens noun class


def _text(path: str) -> io.StringIO:
  """A text file of any filesystem (gs://, local, ...) as a file object for ``csv``."""
  return io.StringIO(fs.read_text(path), newline='')


class AnnotationError(UserError):
  """An annotation file that cannot be parsed; the message names the file and line."""


def index_videos(video_dir: str) -> Dict[str, str]:
  """Maps file stem -> path for every video file under ``video_dir`` (any depth)."""
  found = {}
  for root, _, files in fs.walk(video_dir):
    for name in files:
      stem, ext = os.path.splitext(name)
      if ext.lower() in VIDEO_EXTENSIONS:
        found.setdefault(stem, fs.join(root, name))
  return found


def resolve_video(index: Dict[str, str], video_dir: str, stem: str,
                  default_ext: str = '.mp4') -> str:
  """The path of video ``stem``: found by :func:`index_videos`, else ``video_dir/stem.mp4``
  (kept though it does not exist: preparation reports it as missing)."""
  return index.get(stem, fs.join(video_dir, stem + default_ext))


def _label_indices(names: Sequence[str], table: Dict[str, int]) -> List[int]:
  return [table[n] for n in names]


def parse_timestamp(text: str) -> float:
  """``HH:MM:SS.ff`` (EPIC-Kitchens) or plain seconds -> seconds."""
  text = text.strip()
  if ':' not in text:
    return float(text)
  parts = [float(p) for p in text.split(':')]
  seconds = 0.0
  for p in parts:
    seconds = seconds * 60.0 + p
  return seconds


# ----------------------------------------------------------------- manifest
def _read_manifest_rows(path: str, default_split: str):
  base = fs.dirname(fs.abspath(path))
  rows = []
  if not fs.isfile(path):
    raise AnnotationError(f'{path}: no such manifest file')
  with _text(path) as f:
    first = True
    for lineno, row in enumerate(csv.reader(f), 1):
      if not row or not row[0].strip() or row[0].lstrip().startswith('#'):
        continue
      if first:
        first = False
        if row[0].strip().lower() == 'path':
          continue
        name = row[0].strip()
        if (os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS
            and not fs.isfile(name if fs.isabs(name) else fs.join(base, name))):
          # A header with other column names would otherwise be read as a video.
          raise AnnotationError(
              f'{path}:{lineno}: {name!r} is neither a video file nor the header '
              '"path,label[,start_sec,end_sec][,split]"; name the columns so, or remove the '
              'header')
      if len(row) not in (2, 3, 4, 5):
        raise AnnotationError(f'{path}:{lineno}: expected path,label[,start_sec,end_sec][,split], '
                              f'got {len(row)} fields')
      row = [c.strip() for c in row]
      start = end = None
      split = default_split
      if len(row) in (4, 5):
        try:
          start = float(row[2]) if row[2] else None
          end = float(row[3]) if row[3] else None
        except ValueError:
          raise AnnotationError(
              f'{path}:{lineno}: start/end must be seconds, got {row[2:4]}') from None
        if len(row) == 5 and row[4]:
          split = row[4]
      elif len(row) == 3:
        split = row[2] or default_split
      labels = [l.strip() for l in row[1].split(';') if l.strip()]
      video = row[0] if fs.isabs(row[0]) else fs.join(base, row[0])
      rows.append((f'{path}:{lineno}', video, labels, start, end, split))
  return rows


def load_manifest(paths, label_names: Optional[Sequence[str]] = None,
                  default_split: str = 'train'):
  """CSV ``path,label[,start_sec,end_sec][,split]`` (header optional); one file or several.

  Labels are names or integer indices; several labels are joined by ``;``.
  Relative video paths are taken relative to the manifest's folder. With
  ``label_names`` (e.g. from ``--label_map``) names must be in it; otherwise
  the label map is the sorted set of names (or ``0..max`` for indices).
  """
  rows = []
  for path in ([paths] if isinstance(paths, str) else paths):
    rows += _read_manifest_rows(path, default_split)
  numeric = all(l.lstrip('-').isdigit() for r in rows for l in r[2])
  if label_names is None:
    if numeric:
      top = max([int(l) for r in rows for l in r[2]], default=-1)
      label_names = [str(i) for i in range(top + 1)]
    else:
      label_names = sorted({l for r in rows for l in r[2]})
  table = {n: i for i, n in enumerate(label_names)}
  items = []
  for lineno, video, labels, start, end, split in rows:
    try:
      indices = [int(l) for l in labels] if numeric else _label_indices(labels, table)
    except KeyError as e:
      raise AnnotationError(f'{lineno}: label {e} is not in the label map') from None
    stem = os.path.splitext(os.path.basename(video))[0]
    vid = stem if start is None else f'{stem}_{start:.3f}_{end if end is not None else "end"}'
    items.append(VideoItem(video, indices, split, vid, start, end))
  return items, list(label_names)


# ----------------------------------------------------------------- Kinetics
_KINETICS_SPLITS = {'train': 'train', 'val': 'validation', 'validate': 'validation',
                    'validation': 'validation', 'test': 'test'}


def load_kinetics(csv_paths: Iterable[str], video_dir: str,
                  class_filter: Optional[Sequence[str]] = None):
  """Kinetics-400/600/700 CSVs: ``label,youtube_id,time_start,time_end,split[,is_cc]``.

  Files are ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under
  ``video_dir`` (flat or in class folders). Test CSVs without the label column
  give unlabelled items. ``class_filter`` keeps only those classes and makes
  them the label map (Kinetics-Sounds).
  """
  index = index_videos(video_dir)
  rows = []
  for csv_path in csv_paths:
    with _text(csv_path) as f:
      reader = csv.DictReader(f)
      if not reader.fieldnames or 'youtube_id' not in reader.fieldnames:
        raise AnnotationError(f'{csv_path}: not a Kinetics CSV (no youtube_id column in header '
                              f'{reader.fieldnames})')
      for lineno, row in enumerate(reader, 2):
        try:
          start, end = int(float(row['time_start'])), int(float(row['time_end']))
        except (TypeError, ValueError):
          raise AnnotationError(f'{csv_path}:{lineno}: bad time_start/time_end') from None
        split = _KINETICS_SPLITS.get((row.get('split') or 'train').strip(), row.get('split'))
        label = (row.get('label') or '').strip()
        rows.append((label, row['youtube_id'].strip(), start, end, split))
  if class_filter is not None:
    label_names = list(class_filter)
    keep = set(label_names)
    rows = [r for r in rows if r[0] in keep]
  else:
    label_names = sorted({r[0] for r in rows if r[0]})
  table = {n: i for i, n in enumerate(label_names)}
  items = []
  for label, youtube_id, start, end, split in rows:
    stem = f'{youtube_id}_{start:06d}_{end:06d}'
    items.append(VideoItem(resolve_video(index, video_dir, stem), [table[label]] if label else [],
                           split, stem))
  return items, label_names


def load_kinetics_sounds(csv_paths: Iterable[str], video_dir: str):
  """Kinetics-Sounds: Kinetics restricted to the 32 classes of the paper's appendix B."""
  return load_kinetics(csv_paths, video_dir, class_filter=KINETICS_SOUNDS_CLASSES)


# ----------------------------------------------------------- EPIC-Kitchens
def load_epic_kitchens_55(csv_path: str, video_dir: str, split: str = 'train'):
  """EPIC-Kitchens-55 action segments (``EPIC_train_action_labels.csv``).

  Columns ``uid,participant_id,video_id,narration,start_timestamp,
  stop_timestamp,start_frame,stop_frame,verb,verb_class,noun,noun_class,...``;
  timestamps ``HH:MM:SS.ff``. Videos ``<participant>/<video_id>.MP4`` (any
  layout under ``video_dir``). ``label`` is the verb class, ``noun`` the noun
  class; the label maps come from the verb/noun names in the file.
  """
  index = index_videos(video_dir)
  verbs: Dict[int, str] = {}
  nouns: Dict[int, str] = {}
  items = []
  with _text(csv_path) as f:
    reader = csv.DictReader(f)
    needed = {'uid', 'video_id', 'start_timestamp', 'stop_timestamp'}
    if not reader.fieldnames or not needed <= set(reader.fieldnames):
      raise AnnotationError(
          f'{csv_path}: not an EPIC-Kitchens action CSV (need columns {sorted(needed)})')
    for lineno, row in enumerate(reader, 2):
      try:
        start = parse_timestamp(row['start_timestamp'])
        end = parse_timestamp(row['stop_timestamp'])
        verb = int(row['verb_class']) if row.get('verb_class') not in (None, '') else -1
        noun = int(row['noun_class']) if row.get('noun_class') not in (None, '') else -1
      except ValueError as e:
        raise AnnotationError(f'{csv_path}:{lineno}: {e}') from None
      if verb >= 0:
        verbs.setdefault(verb, row.get('verb') or str(verb))
      if noun >= 0:
        nouns.setdefault(noun, row.get('noun') or str(noun))
      video_id = row['video_id'].strip()
      path = index.get(video_id, fs.join(video_dir, video_id.split('_')[0], video_id + '.MP4'))
      items.append(VideoItem(path, [verb] if verb >= 0 else [], split, f'{video_id}_{row["uid"]}',
                             start, end, noun))
  verb_names = [verbs.get(i, str(i)) for i in range(max(verbs, default=-1) + 1)]
  noun_names = [nouns.get(i, str(i)) for i in range(max(nouns, default=-1) + 1)]
  return items, verb_names, noun_names


# ----------------------------------------------------------------- Charades
_CHARADES_ACTION = re.compile(r'^c(\d{3})\s+([\d.]+)\s+([\d.]+)$')


def load_charades(csv_path: str, video_dir: str, split: str,
                  classes_path: Optional[str] = None):
  """Charades ``Charades_v1_{train,test}.csv``: ``id,...,actions,length``.

  ``actions`` is ``c092 11.90 21.20;c147 0.00 12.60``; a video gets the union
  of its action classes (multi-label over 157 classes, PySlowFast's
  video-level training). ``classes_path`` (``Charades_v1_classes.txt``, lines
  ``c000 Holding some clothes``) names the classes.
  """
  index = index_videos(video_dir)
  names = [f'c{i:03d}' for i in range(157)]
  if classes_path:
    with _text(classes_path) as f:
      for line in f:
        line = line.strip()
        if line:
          code, _, text = line.partition(' ')
          names[int(code[1:])] = text
  items = []
  with _text(csv_path) as f:
    reader = csv.DictReader(f)
    if not reader.fieldnames or not {'id', 'actions'} <= set(reader.fieldnames):
      raise AnnotationError(f'{csv_path}: not a Charades CSV (need id and actions columns)')
    for lineno, row in enumerate(reader, 2):
      labels = []
      for action in filter(None, (a.strip() for a in (row['actions'] or '').split(';'))):
        match = _CHARADES_ACTION.match(action)
        if not match:
          raise AnnotationError(f'{csv_path}:{lineno}: bad action {action!r} '
                                f'(expected "c092 11.90 21.20")')
        labels.append(int(match.group(1)))
      video_id = row['id'].strip()
      items.append(VideoItem(resolve_video(index, video_dir, video_id), sorted(set(labels)), split,
                             video_id))
  return items, names


# ----------------------------------------------------------- UCF101, HMDB51
def load_ucf101(split_dir: str, video_dir: str, fold: int = 1):
  """UCF101 official splits: ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0F.txt``
  (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``), ``testlist0F.txt`` (no label)."""
  class_file = fs.join(split_dir, 'classInd.txt')
  if not fs.exists(class_file):
    raise AnnotationError(f'{class_file}: missing (UCF101 split folder expected)')
  names = {}
  with _text(class_file) as f:
    for line in f:
      if line.strip():
        number, name = line.split()
        names[name] = int(number) - 1
  label_names = [n for n, _ in sorted(names.items(), key=lambda kv: kv[1])]
  index = index_videos(video_dir)
  items = []
  lists = (('train', f'trainlist{fold:02d}.txt'), ('test', f'testlist{fold:02d}.txt'))
  for split, filename in lists:
    list_path = fs.join(split_dir, filename)
    with _text(list_path) as f:
      for lineno, line in enumerate(f, 1):
        if not line.strip():
          continue
        relative = line.split()[0]
        class_name = relative.split('/')[0]
        if class_name not in names:
          raise AnnotationError(f'{list_path}:{lineno}: class {class_name!r} not in classInd.txt')
        stem = os.path.splitext(os.path.basename(relative))[0]
        path = index.get(stem, fs.join(video_dir, relative))
        items.append(VideoItem(path, [names[class_name]], split, stem))
  return items, label_names


_HMDB_SPLIT_FILE = re.compile(r'^(.+)_test_split(\d)\.txt$')


def load_hmdb51(split_dir: str, video_dir: str, fold: int = 1):
  """HMDB51 official splits: ``<class>_test_split<F>.txt`` with lines ``<video>.avi <id>``,
  id 1 = train, 2 = test, 0 = unused. Videos ``<class>/<video>.avi``."""
  files = sorted(fs.glob(fs.join(split_dir, f'*_test_split{fold}.txt')))
  if not files:
    raise AnnotationError(f'{split_dir}: no *_test_split{fold}.txt files (HMDB51 splits expected)')
  label_names = sorted(_HMDB_SPLIT_FILE.match(os.path.basename(p)).group(1) for p in files)
  table = {n: i for i, n in enumerate(label_names)}
  index = index_videos(video_dir)
  items = []
  for list_path in files:
    class_name = _HMDB_SPLIT_FILE.match(os.path.basename(list_path)).group(1)
    with _text(list_path) as f:
      for lineno, line in enumerate(f, 1):
        if not line.strip():
          continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ('0', '1', '2'):
          raise AnnotationError(f'{list_path}:{lineno}: expected "<video>.avi <0|1|2>"')
        if fields[1] == '0':
          continue
        stem = os.path.splitext(fields[0])[0]
        path = index.get(stem, fs.join(video_dir, class_name, fields[0]))
        items.append(VideoItem(path, [table[class_name]], 'train' if fields[1] == '1' else 'test',
                               stem))
  return items, label_names


def load_dataset(dataset: str, annotations: Sequence[str], video_dir: str, *,
                 split: Optional[str] = None, fold: int = 1,
                 label_names: Optional[Sequence[str]] = None,
                 classes_path: Optional[str] = None
                 ) -> Tuple[List[VideoItem], List[str], List[str]]:
  """Dispatches to an adapter; returns ``(items, label_names, noun_names)``."""
  if dataset == 'manifest':
    items, labels = load_manifest(annotations, label_names, default_split=split or 'train')
    return items, labels, []
  if dataset == 'kinetics':
    items, labels = load_kinetics(annotations, video_dir)
  elif dataset == 'kinetics_sounds':
    items, labels = load_kinetics_sounds(annotations, video_dir)
  elif dataset == 'epic_kitchens_55':
    items, labels, nouns = [], [], []
    for path in annotations:
      part, labels, nouns = load_epic_kitchens_55(path, video_dir, split or 'train')
      items += part
    return items, labels, nouns
  elif dataset == 'charades':
    items = []
    for path in annotations:
      guess = 'test' if 'test' in os.path.basename(path).lower() else 'train'
      part, labels = load_charades(path, video_dir, split or guess, classes_path)
      items += part
  elif dataset == 'ucf101':
    items, labels = load_ucf101(annotations[0], video_dir, fold)
  elif dataset == 'hmdb51':
    items, labels = load_hmdb51(annotations[0], video_dir, fold)
  else:
    raise UserError(f'unknown dataset {dataset!r}; expected one of {DATASETS}')
  return items, labels, []
