"""AVA spatio-temporal action detection: per-box multi-label actions, frame mAP@0.5.

Batches carry the boxes of each clip's keyframe as ``boxes`` ``[B, N, 4]``
(x1, y1, x2, y2 in pixels of the model's input frame) with ``box_mask``
``[B, N]``; training batches add ``box_labels`` ``[B, N, C]`` (multi-hot,
class index = action id - 1), evaluation batches ``timestamp`` ``[B]`` (the
keyframe second) and ``image_size`` ``[B, 2]`` (height, width of the frame,
inside the padded canvas when ``data.ava.eval_frames`` is ``'canvas'``). The
head (``models.heads.DetectionHead``) pools each box from the res5 maps; the
loss is the sigmoid cross-entropy of the real boxes; evaluation is AVA's
frame mAP (``metrics/ava_frame_map.py``) against
the prepared split's ground truth, and ``--mode eval`` writes the detections
in the official CSV format.
"""

from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avslowfast_jax.metrics import ava_frame_map
from avslowfast_jax.models.heads import DetectionHead
from avslowfast_jax.tasks.base import Task, register
from data_pipelines import fs
from data_pipelines.errors import UserError

DETECTIONS_FILE = 'detections.csv'


@register('ava')
class Detection(Task):
  """AVA actions of every box (``config.data.ava``: ``max_boxes``, ``test_canvas``, ...).

  Audio reaches the box classifier through the audio laterals inside the
  visual pathways and, with ``model.audio_pool5`` (default), as the clip's
  pooled audio feature appended to every box's feature.
  """
  label_keys = ('box_labels',)

  @property
  def eval_keys(self):
    return ('video_index', 'valid', 'timestamp', 'image_size', 'boxes', 'box_mask')

  # ------------------------------------------------------------- inputs
  def view_size(self, train: bool):
    """Training: the crop; otherwise ``data.ava.test_canvas``, the static view of export
    and predict (evaluation with ``eval_frames='own'`` feeds each frame's own size)."""
    if train:
      return super().view_size(train)
    height, width = self.config.data.ava.test_canvas
    return int(height), int(width)

  def extra_input_specs(self, batch, train: bool) -> dict:
    n = self.config.data.ava.max_boxes
    return {'boxes': jax.ShapeDtypeStruct((batch, n, 4), jnp.float32),
            'box_mask': jax.ShapeDtypeStruct((batch, n), jnp.float32)}

  # ------------------------------------------------------------ model side
  def head(self):
    m = self.config.model
    # res5 at 1/16 of the input with res5_spatial_stride 1 (AVA), 1/32 otherwise.
    stride = 16 * m.res5_spatial_stride
    return DetectionHead(m.num_classes, m.dropout_rate,
                         audio=m.arch == 'avslowfast' and m.audio_pool5,
                         spatial_scale=1.0 / stride)

  def loss(self, logits, batch):
    """Sigmoid cross-entropy, mean over the classes and the real boxes of the global batch."""
    mask = batch['box_mask'].astype(jnp.float32)
    per_box = jnp.mean(optax.sigmoid_binary_cross_entropy(
        logits.astype(jnp.float32), batch['box_labels'].astype(jnp.float32)), axis=-1)
    loss = jnp.sum(per_box * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    return loss, {'loss_cls': loss}

  def train_metrics(self, logits, batch):
    """``boxes_per_clip``, and ``top1_hit``: the real boxes whose top class is one of theirs."""
    mask = batch['box_mask'].astype(jnp.float32)
    top = jnp.argmax(logits, axis=-1)
    hit = jnp.take_along_axis(batch['box_labels'], top[..., None], axis=-1)[..., 0]
    return {'boxes_per_clip': jnp.mean(jnp.sum(mask, axis=-1)),
            'top1_hit': jnp.sum(hit * mask) / jnp.maximum(jnp.sum(mask), 1.0)}

  def scores(self, logits):
    return jax.nn.sigmoid(logits.astype(jnp.float32))

  # ---------------------------------------------------------- evaluation
  def labels(self, batch):
    return batch['box_labels']

  def evaluation(self, split: Optional[str] = None) -> 'DetectionEvaluation':
    return DetectionEvaluation(self, split or self.config.data.eval_split)

  def video_scores(self, view_scores):
    """One keyframe's per-box scores ``[N, C]`` from its views' ``[V, N, C]`` (the mean)."""
    return np.mean(np.asarray(view_scores), axis=0)

  def write_outputs(self, out_dir: str, arrays: Mapping[str, np.ndarray]) -> List[str]:
    """``detections.csv`` (official format) of an evaluation's arrays."""
    fs.makedirs(out_dir)
    path = fs.join(out_dir, DETECTIONS_FILE)
    fs.write_text(path, ava_frame_map.format_detections(detection_rows(arrays, self.label_ids())))
    return [path]

  # -------------------------------------------------------- class names
  def label_ids(self) -> List[int]:
    """The evaluated action ids: the prepared label map's, else every class."""
    data_dir = self.config.data.data_dir
    if data_dir:
      path = ava_frame_map.split_files(data_dir, self.config.data.eval_split)['label_map']
      if fs.exists(path):
        return sorted(ava_frame_map.read_label_map(path))
    return list(range(1, self.config.model.num_classes + 1))

  def class_names(self, label_map: Mapping[str, Any]):
    """Names of the ``num_classes`` scores (index = action id - 1), from the AVA label map."""
    names = [f'action {i + 1}' for i in range(self.config.model.num_classes)]
    data_dir = self.config.data.data_dir
    path = ava_frame_map.split_files(data_dir, 'train')['label_map'] if data_dir else ''
    if path and fs.exists(path):
      for action, name in ava_frame_map.read_label_map(path).items():
        if 1 <= action <= len(names):
          names[action - 1] = name
    return names

  # ------------------------------------------------------------ predict
  def predict_inputs(self, video, boxes=None, keyframe_sec: Optional[float] = None):
    """The evaluation example of the keyframe at ``keyframe_sec`` (default: the middle of
    the video) with ``boxes`` (default: the whole frame as one box)."""
    frame = None if keyframe_sec is None else int(round(keyframe_sec * video.fps))
    if frame is not None and not 0 <= frame < video.num_frames:
      raise ValueError(f'keyframe at {keyframe_sec} s is outside the video '
                       f'({video.num_frames / video.fps:.1f} s)')
    from data_pipelines import ava_pipeline  # pylint: disable=import-outside-toplevel (tf.data)
    return ava_pipeline.predict_batch(self.config, video, boxes, keyframe_frame=frame)

  def predict_lines(self, view_scores, inputs, class_names, k: int = 5) -> List[str]:
    """One line per real box: its normalised corners and top-``k`` actions."""
    boxes, scores = _real_boxes(view_scores, inputs)
    lines = self.describe(scores, class_names, k)
    return [line.replace(f'box {i}:', f'box {i} ({", ".join(f"{v:.3f}" for v in box)}):', 1)
            for i, (line, box) in enumerate(zip(lines, boxes))]

  def plot_prediction(self, path, view_scores, inputs, class_names, mean, std) -> bool:
    """The keyframe with each box and its top-3 actions."""
    # matplotlib is the optional [plots] extra: imported only to draw.
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    height, width = (int(v) for v in inputs['image_size'][0])
    fast = np.asarray(inputs['fast'][0])
    frame = fast[len(fast) // 2, :height, :width] * np.asarray(std) + np.asarray(mean)
    boxes, scores = _real_boxes(view_scores, inputs)
    fig, ax = plt.subplots(figsize=(8, 8 * height / max(width, 1)))
    ax.imshow(np.clip(frame, 0.0, 1.0))
    name = lambda c: class_names[c] if class_names and c < len(class_names) else str(c + 1)
    for i, (box, box_scores) in enumerate(zip(boxes, scores)):
      x1, y1, x2, y2 = box * [width, height, width, height]
      ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color='yellow', lw=2))
      top = np.argsort(-box_scores)[:3]
      ax.text(x1 + 2, y1 + 2, f'{i}: ' + '\n'.join(f'{name(c)} {box_scores[c]:.2f}' for c in top),
              va='top', fontsize=8, color='black', backgroundcolor=(1, 1, 0, 0.7))
    ax.axis('off')
    fig.tight_layout()
    fs.makedirs(os.path.dirname(path) or '.')
    with fs.open(path, 'wb') as f:
      fig.savefig(f, format='png', dpi=100)
    plt.close(fig)
    return True

  def describe(self, video_scores, class_names, k: int = 5) -> List[str]:
    """One line per box of ``[N, C]`` scores: its top-``k`` actions."""
    lines = []
    for i, scores in enumerate(np.asarray(video_scores)):
      order = np.argsort(-scores)[:k]
      label = lambda c: class_names[c] if class_names and c < len(class_names) else str(c + 1)
      lines.append(f'box {i}: ' + ', '.join(f'{label(c)} {scores[c]:.3f}' for c in order))
    return lines


def _real_boxes(view_scores, inputs):
  """``(boxes [K, 4] normalised to the frame, scores [K, C])`` of the first example's real
  boxes."""
  real = np.asarray(inputs['box_mask'][0]) > 0
  height, width = (float(v) for v in inputs['image_size'][0])
  boxes = np.asarray(inputs['boxes'][0], np.float64)[real] / [width, height, width, height]
  return np.clip(boxes, 0.0, 1.0), np.asarray(view_scores)[0][real]


def detection_rows(arrays: Mapping[str, np.ndarray], label_ids, capacity: int = 50):
  """``(video_id, timestamp, box, action_id, score)`` rows: per keyframe, the ``capacity``
  highest-scored (box, class) pairs of the classes ``label_ids`` (what the official
  evaluation keeps), keyframes in evaluation order."""
  label_ids = np.asarray(sorted(label_ids), np.int64)
  keys = list(zip(arrays['video_id'], arrays['timestamp']))
  starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
  for start, end in zip(starts, starts[1:] + [len(keys)]):
    scores = arrays['scores'][start:end][:, label_ids - 1]  # [boxes, classes]
    flat = np.argsort(-scores.reshape(-1), kind='stable')[:capacity]
    box_index, class_index = np.unravel_index(flat, scores.shape)
    for b, c in zip(box_index, class_index):
      yield (str(keys[start][0]), int(keys[start][1]), arrays['boxes'][start + b],
             int(label_ids[c]), float(scores[b, c]))


class DetectionEvaluation:
  """One evaluation pass: every real box's scores, then frame mAP against the split's files.

  Arrays (one row per box, keyframes contiguous): ``video_index``,
  ``video_id``, ``timestamp``, ``boxes`` ``[K, 4]`` normalised to the frame,
  ``scores`` ``[K, C]``.
  """

  def __init__(self, task: Detection, split: str):
    self.task = task
    self.files = ava_frame_map.split_files(task.config.data.data_dir, split)
    self.video_ids = ava_frame_map.read_video_ids(self.files['videos'])
    self.seen = set()
    self.rows = {'video_index': [], 'timestamp': [], 'boxes': [], 'scores': []}
    self.num_keyframes = 0

  def add(self, outputs: Mapping[str, Any]) -> None:
    """``outputs``: numpy ``scores`` ``[B, N, C]`` and the batch's :attr:`Detection.eval_keys`."""
    for i in np.nonzero(np.asarray(outputs['valid']) > 0)[0]:
      key = (int(outputs['video_index'][i]), int(outputs['timestamp'][i]))
      if key in self.seen:  # a keyframe fed twice (padding of a split over processes)
        continue
      self.seen.add(key)
      self.num_keyframes += 1
      height, width = (float(v) for v in outputs['image_size'][i])
      real = np.asarray(outputs['box_mask'][i]) > 0
      boxes = np.asarray(outputs['boxes'][i], np.float64)[real]
      boxes = np.clip(boxes / [width, height, width, height], 0.0, 1.0)
      self.rows['video_index'] += [key[0]] * len(boxes)
      self.rows['timestamp'] += [key[1]] * len(boxes)
      self.rows['boxes'].append(boxes)
      self.rows['scores'].append(np.asarray(outputs['scores'][i], np.float64)[real])

  def arrays(self) -> dict:
    num_classes = self.task.config.model.num_classes
    index = np.asarray(self.rows['video_index'], np.int64)
    if len(index) and index.max() >= len(self.video_ids):
      raise UserError(f'{self.files["videos"]}: lists {len(self.video_ids)} videos, but the '
                      f'evaluation saw video_index {index.max()}')
    return {'video_index': index,
            'video_id': np.asarray([self.video_ids[i] for i in index], dtype=str),
            'timestamp': np.asarray(self.rows['timestamp'], np.int64),
            'boxes': np.concatenate(self.rows['boxes']) if self.rows['boxes'] else np.zeros((0, 4)),
            'scores': (np.concatenate(self.rows['scores']) if self.rows['scores']
                       else np.zeros((0, num_classes)))}

  def result(self):
    """``(metrics, arrays)``: frame mAP@0.5 and per-class APs; the per-box arrays."""
    if not self.num_keyframes:
      raise UserError('the evaluation scored no keyframe: check eval.max_batches and that the '
                      'split holds examples')
    arrays = self.arrays()
    labels = ava_frame_map.read_label_map(self.files['label_map'])
    excluded = (ava_frame_map.read_excluded_keys(self.files['excluded'])
                if fs.exists(self.files['excluded']) else set())
    groundtruth = ava_frame_map.read_boxes_csv(self.files['groundtruth'], labels)
    # Scored as the official script scores the detections.csv that write_outputs writes:
    # the same rows, rounded as written, read back through the official reader's heap.
    text = ava_frame_map.format_detections(detection_rows(arrays, labels))
    detections = ava_frame_map.read_boxes_text(text, DETECTIONS_FILE, labels,
                                               capacity=ava_frame_map.MAX_DETECTIONS_PER_KEY,
                                               scored=True)
    partial = bool(self.task.config.eval.max_batches)
    if partial:  # eval.max_batches stopped early: the ground truth of the keyframes seen
      seen = {ava_frame_map.make_key(self.video_ids[v], t) for v, t in self.seen}
      groundtruth = {k: v for k, v in groundtruth.items() if k in seen}
    result = ava_frame_map.frame_map(groundtruth, detections, labels, excluded)
    metrics = {'mAP': result['mAP'], 'partial': partial, 'num_keyframes': self.num_keyframes,
               'num_boxes': int(len(arrays['timestamp'])),
               'AP_per_class': {f'{c} {labels[c]}': (None if np.isnan(ap) else ap)
                                for c, ap in result['AP'].items()}}
    return metrics, arrays
