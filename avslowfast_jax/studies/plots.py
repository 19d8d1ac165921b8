"""PNG plots of training runs: curves from the TensorBoard event files, and
per-class accuracy of several models side by side (the paper's per-class
analysis, appendix A.3). Needs matplotlib (the ``plots`` extra).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

Series = List[Tuple[int, float]]


def read_scalars(workdir: str) -> Dict[str, Series]:
  """Reads every scalar written by clu's TensorBoard writer under ``workdir``.

  Returns ``{tag: [(step, value), ...]}`` sorted by step; a later write of the
  same step (a resumed run) replaces the earlier one.
  """
  # TensorFlow reads the event files; only this function needs it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  values: Dict[str, Dict[int, float]] = {}
  from data_pipelines import fs  # pylint: disable=g-import-not-at-top  # TF-based, as above
  found = [fs.join(folder, name) for folder, _, names in fs.walk(workdir)
           for name in names if name.startswith('events.out.tfevents.')]
  for path in sorted(found):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField('simple_value'):
          number = float(value.simple_value)
        elif value.HasField('tensor') and value.metadata.plugin_data.plugin_name == 'scalars':
          number = float(tf.make_ndarray(value.tensor))
        else:
          continue
        values.setdefault(value.tag, {})[int(event.step)] = number
  return {tag: sorted(points.items()) for tag, points in values.items()}


def _save(fig, path: str) -> None:
  # The filesystem layer needs TensorFlow (gs:// outputs): imported only to write.
  from data_pipelines import fs  # pylint: disable=g-import-not-at-top
  fs.save_figure(fig, path, dpi=110)


def _plt():
  # matplotlib is the optional [plots] extra: imported only to draw.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_training_curves(runs: Mapping[str, Mapping[str, Series]], path: str) -> str:
  """Loss, top-1 and learning rate against step, one line per run and split."""
  plt = _plt()
  panels = (('loss', ('train/loss', 'eval/loss')), ('top-1', ('train/top1', 'eval/top1')),
            ('learning rate', ('train/lr',)))
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
  colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
  for ax, (title, tags) in zip(axes, panels):
    for index, (name, scalars) in enumerate(runs.items()):
      for tag in tags:
        if tag not in scalars:
          continue
        steps, vals = zip(*scalars[tag])
        style = '-' if tag.startswith('train') else 'o--'
        ax.plot(steps, vals, style, color=colours[index % len(colours)],
                label=f'{name} ({tag.split("/")[0]})', markersize=4)
    ax.set_title(title)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
  return path


def plot_per_class_accuracy(per_class: Mapping[str, Sequence[float]], class_names: Sequence[str],
                            path: str, title: str = 'Per-class top-1') -> str:
  """Grouped bars: one group per class, one bar per model."""
  plt = _plt()
  names = list(per_class)
  x = np.arange(len(class_names))
  width = 0.8 / max(1, len(names))
  fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(class_names)), 4))
  for i, name in enumerate(names):
    acc = np.asarray(per_class[name], dtype=float) * 100
    ax.bar(x + (i - (len(names) - 1) / 2) * width, acc, width, label=name)
  ax.set_xticks(x)
  ax.set_xticklabels(class_names, rotation=30, ha='right', fontsize=8)
  ax.set_ylabel('accuracy (%)')
  ax.set_ylim(0, 105)
  ax.set_title(title)
  ax.legend(fontsize=8)
  ax.grid(axis='y', alpha=0.3)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
  return path


def plot_ablation_bars(panels: Mapping[str, Sequence[Tuple[str, Mapping[str, float],
                                                             Mapping[str, float]]]],
                       metrics: Sequence[Tuple[str, str]], path: str) -> str:
  """One panel per study: per row (setting), one bar per metric at its mean, with an
  error bar of its spread (``None``: no error bar). ``panels[title]`` lists
  ``(row label, {metric: mean}, {metric: spread})``; values are fractions."""
  plt = _plt()
  fig, axes = plt.subplots(len(panels), 1, figsize=(
      max(7, 1.3 * max((len(rows) for rows in panels.values()), default=1)),
      3.6 * len(panels)), squeeze=False)
  width = 0.8 / max(1, len(metrics))
  for ax, (title, rows) in zip(axes[:, 0], panels.items()):
    x = np.arange(len(rows))
    for i, (key, name) in enumerate(metrics):
      means = np.array([100 * row[1].get(key, np.nan) for row in rows], float)
      spread = np.array([100 * (row[2].get(key) or 0.0) for row in rows], float)
      ax.bar(x + (i - (len(metrics) - 1) / 2) * width, means, width, yerr=spread,
             capsize=2, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([row[0] for row in rows], rotation=15, ha='right', fontsize=8)
    ax.set_ylabel('top-1 (%)')
    # Room above 100 for the legend, clear of the bars.
    ax.set_ylim(0, 120)
    ax.set_yticks(np.arange(0, 101, 20))
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=len(metrics), loc='upper center')
    ax.grid(axis='y', alpha=0.3)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
  return path
