"""What a task decides, and the registry of tasks.

A task (``config.task``) owns everything that depends on what the model is
trained to predict: its head module, its loss and training metrics, how
scores are read from logits, how evaluation aggregates views and what it
reports, and how a prediction is printed. The train step, the evaluator,
export and ``predict`` ask the task; none of them knows which task it is.

Adding a task: write a module in ``avslowfast_jax/tasks/`` with a
:class:`Task` subclass decorated ``@register('name')``, import it in
``avslowfast_jax/tasks/__init__.py``, and set ``config.task = 'name'``.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import jax
import numpy as np
from flax import linen as nn

from avslowfast_jax.metrics import video as metrics_lib
from data_pipelines.errors import UserError

TASKS: Dict[str, Type['Task']] = {}


def register(name: str) -> Callable[[Type['Task']], Type['Task']]:
  """Class decorator: makes a :class:`Task` subclass available as ``config.task = name``."""

  def add(cls):
    if name in TASKS:
      raise ValueError(f'task {name!r} is registered twice')
    cls.name = name
    TASKS[name] = cls
    return cls

  return add


def get_task(config) -> 'Task':
  """The task of ``config.task``."""
  name = config.task
  if name not in TASKS:
    raise UserError(f'config.task={name!r}: expected one of {sorted(TASKS)}')
  return TASKS[name](config)


class Task:
  """Base class; subclasses override what differs.

  Attributes:
    name: the registered name.
    label_keys: the batch keys that hold this task's targets (an evaluation
      keeps them next to the scores).
  """
  name: ClassVar[str] = ''
  label_keys: ClassVar[Sequence[str]] = ('label',)
  # The class lists of a prepared dataset's label_map.json this task trains on, and the
  # config.model field that must have room for each (:meth:`check_labels`).
  label_classes: ClassVar[Mapping[str, str]] = {'labels': 'num_classes'}

  def __init__(self, config):
    self.config = config

  @property
  def eval_keys(self) -> Sequence[str]:
    """The batch keys an evaluation keeps next to the scores (its accumulator reads them)."""
    return ('video_index', 'valid', *self.label_keys)

  def check_labels(self, label_map: Mapping[str, Any], where: str) -> None:
    """A ``UserError`` if the data has more classes than the model scores.

    ``label_map`` is a prepared dataset's ``label_map.json`` (read from
    ``where``). A label at or above the model's class count would become an
    all-zero target (a one-hot of an index out of range): training would run,
    its loss near zero, and learn nothing of those classes.
    """
    for key, field in self.label_classes.items():
      names = list(label_map.get(key) or [])
      size = int(self.config.model[field])
      if len(names) > size:
        kind = {'labels': 'classes', 'nouns': 'noun classes'}.get(key, key)
        beyond = (f'label {size} ({names[size]!r}) would train as no class'
                  if len(names) == size + 1 else
                  f'labels {size}..{len(names) - 1} ({names[size]!r}, ...) would train as no '
                  'class')
        raise UserError(
            f'{where}: the data has {len(names)} {kind} but config.model.{field}={size} '
            f'(task {self.name!r}): {beyond}; set --config.model.{field}={len(names)}, or use '
            f'data prepared with the model\'s {size} classes')

  # ------------------------------------------------------------- inputs
  def view_size(self, train: bool) -> Tuple[int, int]:
    """``(height, width)`` of the frames the model sees: the train or test crop."""
    data = self.config.data
    size = data.train_crop_size if train else data.test_crop_size
    return size, size

  def extra_input_specs(self, batch, train: bool) -> dict:
    """``ShapeDtypeStruct`` of inputs the head reads besides the frames and audio."""
    del batch, train
    return {}

  # ------------------------------------------------------------ model side
  def head(self) -> Optional[nn.Module]:
    """The head module the network calls as ``head(aux, inputs, train)`` (params ``head/``)."""
    raise NotImplementedError

  def transform_inputs(self, batch: Mapping[str, Any], rng) -> Mapping[str, Any]:
    """The training batch as the model and :meth:`loss` see it (inside jit; default: as is).

    A pretext task changes its inputs here and adds the targets it made
    (rotation prediction rotates the clips and adds ``rotation``); ``rng`` is
    the step's own key, so a resumed run repeats the draws.
    """
    del rng
    return batch

  def loss(self, logits, batch: Mapping[str, Any]):
    """``(loss, terms)``: the task's loss over the global batch and named terms to log."""
    raise NotImplementedError

  def train_metrics(self, logits, batch: Mapping[str, Any]) -> dict:
    """Metrics of the training batch (device arrays), logged with the losses."""
    del logits, batch
    return {}

  def scores(self, logits):
    """Per-view scores from logits (inside jit)."""
    raise NotImplementedError

  # ---------------------------------------------------------- evaluation
  def labels(self, batch: Mapping[str, Any]):
    """The targets of a batch in the form :meth:`video_metrics` takes."""
    return batch['label']

  def video_metrics(self, scores, labels) -> dict:
    """What an evaluation reports, from per-video scores and targets (numpy)."""
    raise NotImplementedError

  def evaluation(self, split: Optional[str] = None) -> 'VideoEvaluation':
    """A fresh accumulator of one evaluation pass over ``split``."""
    del split
    return VideoEvaluation(self)

  def write_outputs(self, out_dir: str, arrays: Mapping[str, np.ndarray]) -> List[str]:
    """Writes task-specific result files of an evaluation into ``out_dir``; their paths."""
    del out_dir, arrays
    return []

  def video_scores(self, view_scores):
    """One video's scores from its views' scores (``[V, ...]``), as evaluation aggregates."""
    return metrics_lib.aggregate_views(view_scores, self.config.eval.aggregate)

  # -------------------------------------------------------- class names
  def class_names(self, label_map: Mapping[str, Any]):
    """The names of the scores' classes, from a prepared dataset's ``label_map.json``."""
    return list(label_map.get('labels', []))

  # ------------------------------------------------------------ predict
  def predict_inputs(self, video, boxes=None, keyframe_sec: Optional[float] = None):
    """Model inputs of a decoded video for ``predict``; None: the classification views.

    ``boxes`` (normalised ``x1, y1, x2, y2`` rows) and ``keyframe_sec`` are
    for tasks that score boxes of a keyframe.
    """
    del video, boxes, keyframe_sec
    return None

  def predict_lines(self, view_scores, inputs: Mapping[str, Any], class_names,
                    k: int = 5) -> List[str]:
    """What ``predict`` prints for one file, from its views' scores and inputs."""
    del inputs
    return self.describe(self.video_scores(view_scores), class_names, k)

  def plot_prediction(self, path: str, view_scores, inputs: Mapping[str, Any], class_names,
                      mean, std) -> bool:
    """Draws a prediction into the PNG ``path`` (``predict --png``); False if the task has
    no drawing."""
    del path, view_scores, inputs, class_names, mean, std
    return False

  def describe(self, video_scores, class_names, k: int = 5) -> List[str]:
    """Lines that show one video's top-``k`` classes (``predict``)."""
    if isinstance(video_scores, Mapping):
      lines = []
      for key, scores in video_scores.items():
        names = class_names.get(key) if isinstance(class_names, Mapping) else None
        lines.append(f'[{key}] ' + _top_labels(scores, names, k))
      return lines
    return [_top_labels(video_scores, class_names, k)]


def _top_labels(scores, names, k: int) -> str:
  scores = np.asarray(scores)
  order = np.argsort(-scores)[:k]
  label = lambda i: names[i] if names and i < len(names) else str(i)
  return ', '.join(f'{label(i)} {float(scores[i]):.3f}' for i in order)


class VideoEvaluation:
  """One evaluation pass of a view-scoring task: per-video scores, then the task's metrics."""

  def __init__(self, task: Task):
    self.task = task
    self.aggregator = metrics_lib.VideoAggregator(task.config.eval.aggregate)
    self.num_views = 0

  def add(self, outputs: Mapping[str, Any]) -> None:
    """``outputs``: numpy ``scores`` and the batch's ``video_index``, ``valid`` and labels."""
    self.aggregator.add(outputs['video_index'], outputs['scores'], self.task.labels(outputs),
                        outputs['valid'])
    self.num_views += int(np.sum(outputs['valid'] > 0))

  def result(self):
    """``(metrics, arrays)``: the task's metrics, and per-video arrays to save."""
    if not self.aggregator.scores:
      raise UserError('the evaluation scored no video: check eval.max_batches and that the split holds examples')
    ids, scores, labels = self.aggregator.result()
    metrics = self.task.video_metrics(scores, labels)
    metrics.update(num_videos=len(ids), num_views=self.num_views)
    arrays = {'video_index': ids}
    for key, value in (('scores', scores), ('labels', labels)):
      if isinstance(value, Mapping):
        arrays.update({f'{key}_{head}': v for head, v in value.items()})
      else:
        arrays[key] = value
    return metrics, arrays


def softmax_scores(logits):
  """Softmax over the last axis of every logits array (fp32)."""
  return jax.tree.map(lambda l: jax.nn.softmax(l.astype('float32'), axis=-1), logits)
