"""AVA's own annotation files: box CSVs, excluded timestamps and the label map.

Formats (AVA v2.1 / v2.2, the files the ActivityNet evaluation reads):

* Ground truth ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``: one row
  per (box, action); boxes normalised to [0, 1] of the frame; action ids 1-80.
  The person id column may be absent.
* Detected (predicted) person boxes: the same columns with the detector's score
  in place of the person id; the action id column is usually empty (or -1).
* Excluded timestamps ``video_id,timestamp``: keyframes left out of the
  evaluation.
* Label map (``.pbtxt``): ``item { name: "..." id: N }`` blocks for the
  evaluated classes (60 of the 80 ids; ``..._for_activitynet_*.pbtxt``), or
  ``label { name: "..." label_id: N label_type: ... }`` blocks (the full
  ``ava_action_list_v2.*.pbtxt``). The official evaluation's parser accepts
  both (it reads every ``name:`` line and every ``id:`` or ``label_id:`` line),
  and so does :func:`read_label_map`, the one reader of this project.

The videos are cut to seconds 900-1801 of the source (the file's time 0 is
second 900), and keyframes are seconds 902-1798: keyframe ``t`` is the frame
shown at ``t - 900`` s of the cut file, frame index ``(t - 900) * 30`` at 30 fps.

Readers raise ``UserError`` naming the file and line of a malformed row. Box
coordinates outside [0, 1] are clipped, and the number of clipped boxes is
returned so that the preparation report can count them.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import re
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from data_pipelines import fs
from data_pipelines.errors import UserError

NUM_ACTIONS = 80
VIDEO_START_SEC = 900  # time in the source video of the cut file's first frame
FIRST_KEYFRAME_SEC = 902
LAST_KEYFRAME_SEC = 1798
# The 60 action ids the official AVA v2.1/v2.2 evaluation reports.
EVALUATED_ACTION_IDS = (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27,
                        28, 29, 30, 34, 36, 37, 38, 41, 43, 45, 46, 47, 48, 49, 51, 52, 54, 56,
                        57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 72, 73, 74, 76,
                        77, 78, 79, 80)

Key = Tuple[str, int]  # (video_id, timestamp in seconds)


@dataclasses.dataclass
class Box:
  """One box of a keyframe: normalised ``(x1, y1, x2, y2)``, its actions, its score."""
  coords: Tuple[float, float, float, float]
  actions: List[int]  # action ids (1-based), sorted; [] for a detection without labels
  score: float = 1.0  # detector score; 1.0 for ground truth
  person_id: int = -1


@dataclasses.dataclass
class BoxFile:
  """The boxes of one CSV, grouped by keyframe, and what reading them changed."""
  boxes: Dict[Key, List[Box]]
  num_rows: int = 0
  num_clipped: int = 0  # boxes with a coordinate outside [0, 1], clipped
  num_below_threshold: int = 0  # detection rows under the score threshold, dropped


def _fields(path: str, lineno: int, row: List[str], counts: Sequence[int], what: str):
  if len(row) not in counts:
    raise UserError(f'{path}:{lineno}: expected {what}, got {len(row)} fields: '
                    f'{",".join(row)!r}')
  return [c.strip() for c in row]


def _number(path: str, lineno: int, text: str, name: str, kind=float):
  try:
    return kind(text)
  except ValueError:
    raise UserError(f'{path}:{lineno}: {name} must be a number, got {text!r}') from None


def _rows(path: str):
  """``(lineno, fields)`` of the non-empty rows of a CSV (no header in AVA files)."""
  if not fs.exists(path):
    raise UserError(f'{path}: no such file')
  text = fs.read_text(path)
  for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
    if not row or not ''.join(row).strip():
      continue
    yield lineno, row


def _timestamp(path, lineno, text):
  value = _number(path, lineno, text, 'timestamp')
  if value != int(value):
    raise UserError(f'{path}:{lineno}: timestamp must be whole seconds, got {text!r}')
  return int(value)


def clip_box(coords) -> Tuple[Tuple[float, float, float, float], bool]:
  """``coords`` clipped to [0, 1] and whether anything was clipped."""
  clipped = tuple(min(max(float(c), 0.0), 1.0) for c in coords)
  return clipped, clipped != tuple(float(c) for c in coords)


def read_boxes(path: str, detections: bool = False,
               min_score: Optional[float] = None) -> BoxFile:
  """Reads a ground-truth (``detections=False``) or detected-boxes CSV.

  Rows of the same keyframe with the same box coordinates are one box with
  several actions (AVA writes one row per box and action). For detections,
  rows with a score below ``min_score`` are dropped and counted. Boxes keep the
  order of their first row; a malformed row is a ``UserError`` naming the file
  and line.
  """
  what = ('video_id,timestamp,x1,y1,x2,y2,action_id,score' if detections else
          'video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]')
  out = BoxFile(boxes=collections.OrderedDict())
  index: Dict[Tuple[Key, Tuple[str, ...]], Box] = {}
  for lineno, row in _rows(path):
    row = _fields(path, lineno, row, (8,) if detections else (7, 8), what)
    out.num_rows += 1
    if not row[0]:
      raise UserError(f'{path}:{lineno}: empty video_id')
    key = (row[0], _timestamp(path, lineno, row[1]))
    raw = tuple(_number(path, lineno, row[i], name)
                for i, name in zip(range(2, 6), ('x1', 'y1', 'x2', 'y2')))
    if raw[2] < raw[0] or raw[3] < raw[1]:
      raise UserError(f'{path}:{lineno}: box has x2 < x1 or y2 < y1: {row[2:6]}')
    action = -1
    if row[6] not in ('', '-1'):
      action = _number(path, lineno, row[6], 'action_id', int)
      if not 1 <= action <= NUM_ACTIONS:
        raise UserError(f'{path}:{lineno}: action_id {action} outside 1..{NUM_ACTIONS}')
    elif not detections:
      raise UserError(f'{path}:{lineno}: ground-truth row without an action_id')
    score, person = 1.0, -1
    if detections:
      score = _number(path, lineno, row[7], 'score')
      if min_score is not None and score < min_score:
        out.num_below_threshold += 1
        continue
    elif len(row) == 8 and row[7]:
      person = _number(path, lineno, row[7], 'person_id', int)
    box_id = (key, tuple(row[2:6]))
    box = index.get(box_id)
    if box is None:
      coords, clipped = clip_box(raw)
      out.num_clipped += clipped
      box = index[box_id] = Box(coords, [], score, person)
      out.boxes.setdefault(key, []).append(box)
    else:
      box.score = max(box.score, score)
    if action > 0 and action not in box.actions:
      box.actions.append(action)
      box.actions.sort()
  return out


def read_excluded(path: str) -> Set[Key]:
  """``{(video_id, timestamp)}`` of an excluded-timestamps CSV."""
  keys = set()
  for lineno, row in _rows(path):
    row = _fields(path, lineno, row, (2,), 'video_id,timestamp')
    keys.add((row[0], _timestamp(path, lineno, row[1])))
  return keys


_ITEM = re.compile(r'\b(?:item|label)\s*\{(.*?)\}', re.S)
_FIELD = re.compile(r'(\w+)\s*:\s*("(?:[^"\\]|\\.)*"|[^\s}]+)')


def read_label_map(path: str) -> List[Tuple[int, str]]:
  """``[(action_id, name)]`` of a label-map ``.pbtxt``, in file order.

  Blocks ``item { ... }`` or ``label { ... }`` (both occur in AVA's files);
  in a block, ``id`` or ``label_id`` is the id and ``name`` (else
  ``display_name``) the name; other fields (``label_type``) are ignored.
  """
  if not fs.exists(path):
    raise UserError(f'{path}: no such file')
  text = fs.read_text(path)
  entries = []
  for match in _ITEM.finditer(text):
    lineno = text.count('\n', 0, match.start()) + 1
    fields = {k: v.strip('"') for k, v in _FIELD.findall(match.group(1))}
    ident = fields.get('id', fields.get('label_id'))
    name = fields.get('name', fields.get('display_name'))
    if ident is None or name is None:
      raise UserError(f'{path}:{lineno}: label-map item without an id and a name')
    entries.append((_number(path, lineno, ident, 'id', int), name))
  if not entries:
    raise UserError(f'{path}: no "item {{ name: ... id: ... }}" or "label {{ name: ... '
                    'label_id: ... }}" entries; expected an AVA label map (.pbtxt)')
  ids = [i for i, _ in entries]
  if len(set(ids)) != len(ids):
    raise UserError(f'{path}: an id is listed twice')
  return entries


def format_label_map(entries: Iterable[Tuple[int, str]]) -> str:
  """The ``.pbtxt`` text of ``[(action_id, name)]`` (what :func:`read_label_map` reads)."""
  return ''.join(f'item {{\n  name: "{name}"\n  id: {ident}\n}}\n' for ident, name in entries)


def format_boxes_csv(rows: Iterable[Tuple[str, int, Sequence[float], int, float]],
                     person_ids: bool = True) -> str:
  """CSV text of ``(video_id, timestamp, coords, action_id, last)`` rows.

  ``last`` is the person id (ground truth, written as an int) or a score.
  Timestamps are written as ``%04d`` and coordinates with 3 decimals, as AVA's
  files are.
  """
  lines = []
  for video_id, sec, coords, action, last in rows:
    last_text = str(int(last)) if person_ids else f'{float(last):.6f}'
    action_text = '' if action is None or action < 0 else str(int(action))
    lines.append(f'{video_id},{int(sec):04d},' + ','.join(f'{c:.3f}' for c in coords)
                 + f',{action_text},{last_text}\n')
  return ''.join(lines)


def format_excluded_csv(keys: Iterable[Key]) -> str:
  return ''.join(f'{v},{int(t):04d}\n' for v, t in sorted(keys))


def iou(a, b) -> float:
  """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (no +1 in areas)."""
  w = min(a[2], b[2]) - max(a[0], b[0])
  h = min(a[3], b[3]) - max(a[1], b[1])
  if w <= 0 or h <= 0:
    return 0.0
  inter = w * h
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0
