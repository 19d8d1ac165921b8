"""Per-video aggregation and the evaluation metrics, on hand-made scores."""

import numpy as np
import pytest

from avslowfast_jax.evaluation import evaluator
from avslowfast_jax.metrics import video as metrics
from avslowfast_jax.tasks import get_task
from configs import charades, epic_kitchens, kinetics
from data_pipelines.errors import UserError


def test_mean_and_max_aggregation_ignore_padding():
  scores = np.array([[0.6, 0.4], [0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
  video = np.array([0, 0, 1, 1])
  valid = np.array([1, 1, 1, 0])  # last row is padding
  labels = np.array([1, 1, 0, 0])
  mean = metrics.VideoAggregator('mean')
  mean.add(video, scores, labels, valid)
  ids, agg, lab = mean.result()
  np.testing.assert_array_equal(ids, [0, 1])
  np.testing.assert_allclose(agg, [[0.4, 0.6], [0.9, 0.1]])
  np.testing.assert_array_equal(lab, [1, 0])
  mx = metrics.VideoAggregator('max')
  mx.add(video[:2], scores[:2], labels[:2], valid[:2])
  mx.add(video[2:], scores[2:], labels[2:], valid[2:])  # views may arrive in several batches
  np.testing.assert_allclose(mx.result()[1], [[0.6, 0.8], [0.9, 0.1]])
  with pytest.raises(UserError, match='aggregate'):
    metrics.VideoAggregator('median')


def test_topk_and_per_class_accuracy():
  scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25]])
  labels = np.array([0, 1, 1, 2])
  m = get_task(kinetics.get_config()).video_metrics(scores, labels)
  assert m['top1'] == pytest.approx(0.5)
  assert m['top5'] == pytest.approx(1.0)
  assert metrics.topk_accuracy(scores, labels, 2) == pytest.approx(0.75)
  assert m['per_class_accuracy'] == [1.0, 0.5, 0.0]
  assert m['mean_class_accuracy'] == pytest.approx(0.5)


def test_mean_average_precision():
  scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.6]])
  multi_hot = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
  # Class 0: positives at ranks 1 and 3 -> (1 + 2/3) / 2; class 1: rank 1 -> 1.
  assert metrics.average_precision(scores[:, 0], multi_hot[:, 0]) == pytest.approx(5 / 6)
  assert metrics.mean_average_precision(scores, multi_hot) == pytest.approx((5 / 6 + 1) / 2)
  # Classes without positives do not count.
  assert metrics.mean_average_precision(scores, np.c_[multi_hot, np.zeros(4)]) == \
      pytest.approx((5 / 6 + 1) / 2)


def test_verb_noun_action_accuracy():
  scores = {'verb': np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
            'noun': np.array([[0.1, 0.9], [0.3, 0.7], [0.8, 0.2]])}
  labels = {'verb': np.array([0, 1, 1]), 'noun': np.array([1, 0, 0])}
  m = get_task(epic_kitchens.get_config()).video_metrics(scores, labels)
  assert m['verb_top1'] == pytest.approx(2 / 3)
  assert m['noun_top1'] == pytest.approx(2 / 3)
  assert m['action_top1'] == pytest.approx(1 / 3)  # only video 0 has both right


def test_write_results(tmp_path):
  arrays = {'video_index': np.array([0, 1]), 'scores': np.eye(2), 'labels': np.array([0, 1])}
  path = evaluator.write_results(str(tmp_path), {'top1': 1.0}, arrays, {'step': 5})
  import json  # pylint: disable=g-import-not-at-top
  assert json.load(open(path)) == {'step': 5, 'top1': 1.0}
  saved = np.load(tmp_path / 'per_video_scores.npz')
  np.testing.assert_array_equal(saved['scores'], np.eye(2))


def test_tasks_aggregate_views_and_report_their_metrics():
  """A task's evaluation: views of a video aggregated as the config says (mean,
  or max for Charades), padding rows ignored, the task's metrics and arrays."""
  task = get_task(charades.get_config())  # multi-label, max over views
  evaluation = task.evaluation()
  evaluation.add({'video_index': np.array([0, 0, 1, 1]), 'valid': np.array([1, 1, 1, 0]),
                  'scores': np.array([[0.9, 0.1], [0.2, 0.7], [0.3, 0.6], [0.99, 0.99]]),
                  'label': np.array([[1, 0], [1, 0], [0, 1], [0, 0]])})
  result, arrays = evaluation.result()
  np.testing.assert_allclose(arrays['scores'], [[0.9, 0.7], [0.3, 0.6]])
  # Class 0: the positive ranks first (AP 1); class 1: second of two (AP 1/2).
  assert result['mAP'] == pytest.approx(0.75) and result['num_views'] == 3
  assert result['num_videos'] == 2
  verb_noun = get_task(epic_kitchens.get_config()).evaluation()
  verb_noun.add({'video_index': np.array([4]), 'valid': np.array([1.0]),
                 'scores': {'verb': np.array([[0.2, 0.8]]), 'noun': np.array([[0.6, 0.4]])},
                 'label': np.array([1]), 'noun_label': np.array([0])})
  result, arrays = verb_noun.result()
  assert result['action_top1'] == 1.0 and set(arrays) == {
      'video_index', 'scores_verb', 'scores_noun', 'labels_verb', 'labels_noun'}
  with pytest.raises(UserError, match='no video'):
    get_task(kinetics.get_config()).evaluation().result()


def test_unknown_task_is_an_error_listing_the_tasks():
  config = kinetics.get_config()
  config.task = 'segmentation'
  with pytest.raises(UserError, match="classification"):
    get_task(config)
