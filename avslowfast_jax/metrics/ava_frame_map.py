"""AVA frame-level mAP, as the official ActivityNet evaluation computes it, and AVA's files.

Protocol (ActivityNet ``Evaluation/get_ava_performance.py`` with its PASCAL
evaluator), reimplemented here:

* a frame key is ``video_id,%04d`` of the keyframe second; every (box,
  class) row of a detection file is one detection with its score; no NMS;
* at most :data:`MAX_DETECTIONS_PER_KEY` (50) detections per key, kept as
  the official reader keeps them: a min-heap of ``(score, action_id, y1, x1,
  y2, x2)`` per key fed in file order; once full, a row replaces the heap's
  smallest tuple only if its score is strictly higher than the smallest
  score (a row tied with it is dropped; among tied lowest scores the one with
  the smallest action id, then box, is the one replaced); the kept rows are
  then sorted by descending score with Python's stable ``sorted``, so equal
  scores keep the heap's internal array order (not file order). Ground truth
  goes through the same heap without a cap, which orders it too;
* rows of classes outside the label map are dropped; keys listed in the
  excluded-timestamps file are skipped in ground truth and detections;
* per class, each key's detections in descending score match the key's
  ground truth of that class: a detection whose highest-IoU ground-truth
  box has IoU >= 0.5 and is not yet matched is a true positive, otherwise a
  false positive (a second match of a box is a false positive, and so is
  every detection on a key without ground truth of its class); boxes with
  ``x2 <= x1`` or ``y2 <= y1`` are dropped;
* AP per class: PASCAL VOC all-points interpolation over all keys'
  detections concatenated in key order (the order keys first appear in the
  file), ranked as the official script ranks them: ``np.argsort(scores)``
  (numpy's default, unstable sort), reversed. Equal scores get no special
  treatment: each detection is one step of the precision/recall curve, in
  whatever order that sort leaves them, so an AP over tied scores can depend
  on numpy's sort (numpy before 1.25 sorts up to 16 values by insertion,
  which is stable, so reversing puts the later of two tied detections
  first; longer arrays, and numpy's AVX-512 sort of 1.25 on, may order ties
  otherwise). We make the same call on the same array, so we agree with the
  official script run under the same numpy. A class with ground truth and
  no detection has AP 0;
* mAP: the mean over label-map classes that have ground truth.

Files (the official formats):

* ground truth / detections CSV: ``video_id,timestamp,x1,y1,x2,y2,action_id``
  then ``person_id`` (ground truth) or ``score`` (detections); boxes
  normalised to [0, 1];
* excluded timestamps CSV: ``video_id,timestamp``;
* label map ``.pbtxt``: ``item { name: "..." id: N }`` blocks or ``label {
  name: "..." label_id: N label_type: ... }`` blocks (both are read by
  ``data_pipelines.ava_files.read_label_map``).

A malformed row is a ``UserError`` naming the file and line.
"""

from __future__ import annotations

import csv
import heapq
import io
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from data_pipelines import ava_files
from data_pipelines import fs
from data_pipelines.errors import UserError

MAX_DETECTIONS_PER_KEY = 50
IOU_THRESHOLD = 0.5


def make_key(video_id: str, timestamp) -> str:
  """The official frame key ``video_id,%04d``."""
  return f'{video_id},{int(timestamp):04d}'


class Boxes:
  """The boxes of one frame key: ``boxes`` ``[K, 4]`` (x1, y1, x2, y2), ``labels`` ``[K]``
  (action ids), ``scores`` ``[K]`` (1 for ground truth)."""

  def __init__(self, boxes, labels, scores):
    self.boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    self.labels = np.asarray(labels, np.int64).reshape(-1)
    self.scores = np.asarray(scores, np.float64).reshape(-1)

  def __len__(self):
    return len(self.labels)


def _rows(path: str):
  """``(line number, fields)`` of a CSV file (blank lines skipped)."""
  if not fs.exists(path):
    raise UserError(f'{path}: no such file')
  return _text_rows(fs.read_text(path))


def _text_rows(text: str):
  """``(line number, fields)`` of CSV text (blank lines skipped)."""
  for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
    if row and any(field.strip() for field in row):
      yield number, [field.strip() for field in row]


def read_boxes_csv(path: str, class_ids: Optional[Iterable[int]] = None, capacity: int = 0,
                   scored: bool = False) -> Dict[str, Boxes]:
  """Reads a ground-truth or detection CSV: ``{key: Boxes}`` in the order keys first appear.

  ``class_ids``: keep only these action ids (the label map); ``capacity`` >
  0 keeps at most ``capacity`` rows per key (detections: 50), chosen and
  ordered as the official reader does (:func:`keep_per_key`). ``scored``:
  the 8th column is a score (detections); otherwise it is a person id,
  ignored, and every score is 1 (ground truth).
  """
  if not fs.exists(path):
    raise UserError(f'{path}: no such file')
  return read_boxes_text(fs.read_text(path), path, class_ids, capacity, scored)


def read_boxes_text(text: str, name: str, class_ids: Optional[Iterable[int]] = None,
                    capacity: int = 0, scored: bool = False) -> Dict[str, Boxes]:
  """:func:`read_boxes_csv` of CSV ``text`` (``name`` names it in errors)."""
  keep = None if class_ids is None else set(int(c) for c in class_ids)
  rows = []
  for number, row in _text_rows(text):
    if len(row) not in (7, 8):
      raise UserError(f'{name}, line {number}: expected 7 or 8 columns (video_id, timestamp, '
                      f'x1, y1, x2, y2, action_id[, person_id|score]), got {len(row)}')
    try:
      timestamp = int(float(row[1]))
      x1, y1, x2, y2 = (float(v) for v in row[2:6])
      action = int(row[6])
      score = 1.0
      if scored:
        if len(row) != 8:
          raise UserError(f'{name}, line {number}: a detection row needs a score (8 columns)')
        score = float(row[7])
    except ValueError as e:
      raise UserError(f'{name}, line {number}: not a number ({e})') from None
    if not row[0]:
      raise UserError(f'{name}, line {number}: empty video id')
    if keep is not None and action not in keep:
      continue
    rows.append((make_key(row[0], timestamp), x1, y1, x2, y2, action, score))
  return keep_per_key(rows, capacity)


def keep_per_key(rows: Iterable[Tuple[str, float, float, float, float, int, float]],
                 capacity: int = 0) -> Dict[str, Boxes]:
  """``{key: Boxes}`` of ``(key, x1, y1, x2, y2, action_id, score)`` rows in file order,
  kept and ordered exactly as the official reader (``read_csv`` of
  ``get_ava_performance.py``) keeps and orders them.

  Per key, a min-heap (``heapq``) of ``(score, action_id, y1, x1, y2, x2)``
  tuples: every row is pushed while the heap holds fewer than ``capacity``
  (always, when ``capacity`` < 1); after that a row replaces the smallest
  tuple only if its score is strictly greater than the smallest score. The
  kept tuples are then sorted by descending score with a stable sort over the
  heap's array, so tied scores come in heap-array order. Keys come in the
  order their first kept row appears.
  """
  heaps: Dict[str, list] = {}
  for key, x1, y1, x2, y2, action, score in rows:
    heap = heaps.setdefault(key, [])
    item = (float(score), int(action), float(y1), float(x1), float(y2), float(x2))
    if capacity < 1 or len(heap) < capacity:
      heapq.heappush(heap, item)
    elif item[0] > heap[0][0]:
      heapq.heapreplace(heap, item)
  out = {}
  for key, heap in heaps.items():
    entries = sorted(heap, key=lambda entry: -entry[0])
    boxes = [(x1, y1, x2, y2) for _, _, y1, x1, y2, x2 in entries]
    out[key] = Boxes(boxes, [e[1] for e in entries], [e[0] for e in entries])
  return out


def read_excluded_keys(path: str) -> Set[str]:
  """The frame keys of an excluded-timestamps CSV (``video_id,timestamp``)."""
  return {make_key(video_id, timestamp) for video_id, timestamp in ava_files.read_excluded(path)}


def read_label_map(path: str) -> Dict[int, str]:
  """``{action id: name}`` of a label-map ``.pbtxt`` (``item { name: "..." id: N }``)."""
  return dict(ava_files.read_label_map(path))


def read_video_ids(path: str) -> List[str]:
  """The JSON list of video ids of a split (index = ``video_index`` of its batches)."""
  if not fs.exists(path):
    raise UserError(f'{path}: no such file')
  ids = fs.read_json(path)
  if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
    raise UserError(f'{path}: expected a JSON list of video ids')
  return ids


def format_detections(rows: Iterable[Tuple[str, int, Sequence[float], int, float]]) -> str:
  """CSV text of ``(video_id, timestamp, (x1, y1, x2, y2), action_id, score)`` rows in the
  official format ``video_id,%04d,x1,y1,x2,y2,action_id,score``."""
  out = io.StringIO()
  for video_id, timestamp, box, action, score in rows:
    x1, y1, x2, y2 = box
    out.write(f'{video_id},{int(timestamp):04d},{x1:.4f},{y1:.4f},{x2:.4f},{y2:.4f},'
              f'{int(action)},{score:.6f}\n')
  return out.getvalue()


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """``[N, M]`` intersection over union of (x1, y1, x2, y2) boxes (no +1: normalised)."""
  ix = np.maximum(0.0, np.minimum(a[:, None, 2], b[None, :, 2])
                  - np.maximum(a[:, None, 0], b[None, :, 0]))
  iy = np.maximum(0.0, np.minimum(a[:, None, 3], b[None, :, 3])
                  - np.maximum(a[:, None, 1], b[None, :, 1]))
  inter = ix * iy
  area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
  union = area(a)[:, None] + area(b)[None, :] - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
  """True-positive flags of one key's detections of one class (in descending score)."""
  tp = np.zeros(len(det_boxes), bool)
  if not len(gt_boxes):
    return tp
  overlaps = iou(det_boxes, gt_boxes)
  best = np.argmax(overlaps, axis=1)
  taken = np.zeros(len(gt_boxes), bool)
  for i, g in enumerate(best):
    if overlaps[i, g] >= IOU_THRESHOLD and not taken[g]:
      tp[i] = taken[g] = True
  return tp


def voc_average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
  """PASCAL VOC all-points AP of detections ``scores``/``tp`` against ``num_gt`` boxes."""
  if num_gt == 0:
    return float('nan')
  if not len(scores):
    return 0.0
  order = np.argsort(scores)[::-1]  # the official call: numpy's default sort, reversed
  tp = tp[order].astype(np.float64)
  tps, fps = np.cumsum(tp), np.cumsum(1.0 - tp)
  precision = np.concatenate([[0.0], tps / (tps + fps), [0.0]])
  recall = np.concatenate([[0.0], tps / num_gt, [1.0]])
  for i in range(len(precision) - 2, -1, -1):
    precision[i] = max(precision[i], precision[i + 1])
  steps = np.where(recall[1:] != recall[:-1])[0] + 1
  return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def select_classes(boxes: Boxes, class_ids: Set[int]) -> Boxes:
  """The rows of ``boxes`` whose action id is in ``class_ids``."""
  keep = np.isin(boxes.labels, np.asarray(sorted(class_ids), np.int64))
  return Boxes(boxes.boxes[keep], boxes.labels[keep], boxes.scores[keep])


def frame_map(groundtruth: Mapping[str, Boxes], detections: Mapping[str, Boxes],
              class_ids: Iterable[int], excluded: Iterable[str] = ()) -> dict:
  """Frame mAP@0.5: ``{'mAP', 'AP': {action id: AP (nan without ground truth)},
  'num_gt': {...}, 'num_detections': {...}}``.

  ``detections`` are taken in key order, each key's rows in their order,
  restricted to ``class_ids`` (the label map's action ids): pass them as
  :func:`read_boxes_csv` (``capacity=50``) or :func:`keep_per_key` return
  them, which is how the official reader caps and orders them (capping again
  here would reorder tied scores). ``groundtruth`` likewise (no cap).
  """
  class_ids = sorted(int(c) for c in class_ids)
  wanted = set(class_ids)
  excluded = set(excluded)
  num_gt = {c: 0 for c in class_ids}
  for key, gt in groundtruth.items():
    if key in excluded:
      continue
    for label in gt.labels:
      if int(label) in wanted:
        num_gt[int(label)] += 1
  scores = {c: [] for c in class_ids}
  tps = {c: [] for c in class_ids}
  empty = Boxes(np.zeros((0, 4)), [], [])
  for key, det in detections.items():
    if key in excluded:
      continue
    det = select_classes(det, wanted)
    if len(det) > MAX_DETECTIONS_PER_KEY:
      raise ValueError(f'{key}: {len(det)} detections; pass them through keep_per_key '
                       f'(at most {MAX_DETECTIONS_PER_KEY} per key, as the official reader)')
    valid = (det.boxes[:, 2] > det.boxes[:, 0]) & (det.boxes[:, 3] > det.boxes[:, 1])
    gt = groundtruth.get(key, empty)
    for label in dict.fromkeys(int(l) for l in det.labels[valid]):
      mine = valid & (det.labels == label)
      scores[label].append(det.scores[mine])
      tps[label].append(_match(det.boxes[mine], gt.boxes[gt.labels == label]))
  ap = {}
  for c in class_ids:
    s = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
    t = np.concatenate(tps[c]) if tps[c] else np.zeros(0, bool)
    ap[c] = voc_average_precision(s, t, num_gt[c])
  with_gt = [v for c, v in ap.items() if num_gt[c] > 0]
  return {'mAP': float(np.mean(with_gt)) if with_gt else float('nan'), 'AP': ap,
          'num_gt': num_gt,
          'num_detections': {c: int(sum(len(x) for x in scores[c])) for c in class_ids}}


def split_files(data_dir: str, split: str) -> dict:
  """Paths of a prepared AVA split's evaluation files (under ``{data_dir}/ava``)."""
  root = fs.join(data_dir, 'ava')
  return {'label_map': fs.join(root, 'label_map.pbtxt'),
          'groundtruth': fs.join(root, f'{split}_groundtruth.csv'),
          'excluded': fs.join(root, f'{split}_excluded_timestamps.csv'),
          'videos': fs.join(root, f'{split}_videos.json')}


def evaluate_files(groundtruth_csv: str, detections_csv: str, label_map: str,
                   excluded_csv: Optional[str] = None) -> dict:
  """:func:`frame_map` of the official files (what ``get_ava_performance.py`` reads)."""
  labels = read_label_map(label_map)
  excluded = read_excluded_keys(excluded_csv) if excluded_csv else set()
  return frame_map(read_boxes_csv(groundtruth_csv, labels),
                   read_boxes_csv(detections_csv, labels, capacity=MAX_DETECTIONS_PER_KEY,
                                  scored=True),
                   labels, excluded)


def read_predict_boxes(path: str) -> np.ndarray:
  """``[K, 4]`` normalised boxes of a ``predict --boxes`` CSV, in file order.

  Rows are ``x1,y1,x2,y2`` (a fifth column, a score, is ignored), or AVA rows
  ``video_id,timestamp,x1,y1,x2,y2,action_id[,...]``, whose distinct boxes are
  taken. Every corner must lie in [0, 1] with ``x1 < x2`` and ``y1 < y2``.
  """
  boxes = []
  for number, row in _rows(path):
    if len(row) in (4, 5):
      corners = row[:4]
    elif len(row) in (7, 8):
      corners = row[2:6]
    else:
      raise UserError(f'{path}, line {number}: expected x1,y1,x2,y2 or an AVA row '
                      f'(video_id,timestamp,x1,y1,x2,y2,action_id[,...]), got {len(row)} columns')
    try:
      box = tuple(float(v) for v in corners)
    except ValueError as e:
      raise UserError(f'{path}, line {number}: not a number ({e})') from None
    x1, y1, x2, y2 = box
    if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
      raise UserError(f'{path}, line {number}: box {box} is not normalised corners '
                      '(0 <= x1 < x2 <= 1, 0 <= y1 < y2 <= 1)')
    if box not in boxes:
      boxes.append(box)
  if not boxes:
    raise UserError(f'{path}: no boxes')
  return np.asarray(boxes, np.float32)
