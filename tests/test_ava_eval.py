"""AVA frame mAP (metrics/ava_frame_map.py) on hand-made files whose APs are worked out below."""

import numpy as np
import pytest

from avslowfast_jax.metrics import ava_frame_map
from data_pipelines.errors import UserError

LABEL_MAP = '''item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "crawl"
  id: 2
}
item {
  name: "crouch/kneel"
  label_id: 3
}
'''

A = '0.1,0.1,0.5,0.5'
B = '0.6,0.6,0.9,0.9'
NEAR_B = '0.6,0.6,0.75,0.75'  # IoU with B = 0.0225 / 0.09 = 0.25

GROUNDTRUTH = f'''v1,0902,{A},1,0
v1,0902,{B},1,1
v1,0903,{A},1,0
v1,0903,{A},2,0
v2,0902,{A},1,0
v1,0902,{A},4,0
'''
EXCLUDED = 'v2,0902\n'


def detections(class2_second_score):
  return f'''v1,0902,{A},1,0.9
v1,0902,{A},1,0.8
v1,0902,{NEAR_B},1,0.7
v1,0903,{A},1,0.6
v3,0905,{A},1,0.95
v2,0902,{A},1,0.99
v1,0902,{A},2,0.5
v1,0903,{A},2,{class2_second_score}
v1,0902,{A},3,0.3
v1,0902,{A},4,0.9
'''


@pytest.fixture
def files(tmp_path):
  paths = {}
  for name, text in (('label_map.pbtxt', LABEL_MAP), ('gt.csv', GROUNDTRUTH),
                     ('excluded.csv', EXCLUDED), ('tied.csv', detections(0.5)),
                     ('untied.csv', detections(0.4))):
    (tmp_path / name).write_text(text)
    paths[name] = str(tmp_path / name)
  return paths


def test_hand_computed_aps(files):
  """Class 1 (3 ground-truth boxes; v2,0902 is excluded): by score, 0.95 FP (frame without
  ground truth), 0.9 TP, 0.8 FP (duplicate), 0.7 FP (IoU 0.25), 0.6 TP. Precision 1/2 at
  recall 1/3 and 2/5 at 2/3: AP = (1/2 + 2/5) / 3 = 0.3. The excluded 0.99 does not count.

  Class 2 (1 box, on v1,0903): an FP on v1,0902 (which has ground truth, of other classes)
  and the TP. Untied (0.5 FP, 0.4 TP): precision 1/2 at recall 1 -> AP 0.5. Tied at 0.5:
  the official order puts the later key first, the TP -> AP 1.
  Class 3 has no ground truth (left out of the mean); class 4 is not in the label map.
  """
  untied = ava_frame_map.evaluate_files(files['gt.csv'], files['untied.csv'], files['label_map.pbtxt'],
                              files['excluded.csv'])
  assert untied['AP'][1] == pytest.approx(0.3)
  assert untied['AP'][2] == pytest.approx(0.5)
  assert np.isnan(untied['AP'][3]) and 4 not in untied['AP']
  assert untied['num_gt'] == {1: 3, 2: 1, 3: 0}
  assert untied['num_detections'][1] == 5
  assert untied['mAP'] == pytest.approx(0.4)
  tied = ava_frame_map.evaluate_files(files['gt.csv'], files['tied.csv'], files['label_map.pbtxt'],
                            files['excluded.csv'])
  assert tied['AP'][2] == pytest.approx(1.0)
  assert tied['mAP'] == pytest.approx(0.65)


def test_without_the_exclusions_the_excluded_key_counts(files):
  """v2,0902 back in: class 1 has 4 boxes and a 0.99 TP first. Ranking TP, FP, TP, FP, FP,
  TP: precision 1 at recall 1/4, 2/3 at 2/4, 1/2 at 3/4 -> AP = (1 + 2/3 + 1/2) / 4."""
  result = ava_frame_map.evaluate_files(files['gt.csv'], files['untied.csv'], files['label_map.pbtxt'])
  assert result['AP'][1] == pytest.approx((1 + 2 / 3 + 1 / 2) / 4)


def test_at_most_50_detections_per_key(tmp_path, files):
  """50 false positives above the one true positive push it out: AP 0 (1/51 without the cap)."""
  rows = [f'v1,0903,0.0,0.0,0.05,0.05,2,0.{90 + i % 9}' for i in range(50)]
  rows.append(f'v1,0903,{A},2,0.1')
  path = tmp_path / 'many.csv'
  path.write_text('\n'.join(rows) + '\n')
  result = ava_frame_map.evaluate_files(files['gt.csv'], str(path), files['label_map.pbtxt'])
  assert result['AP'][2] == 0.0
  assert result['num_detections'][2] == 50
  assert ava_frame_map.voc_average_precision(np.array([0.9] * 50 + [0.1]), np.array([0] * 50 + [1], bool),
                                   1) == pytest.approx(1 / 51)


def test_readers(files):
  assert ava_frame_map.read_label_map(files['label_map.pbtxt']) == {
      1: 'bend/bow (at the waist)', 2: 'crawl', 3: 'crouch/kneel'}
  assert ava_frame_map.read_excluded_keys(files['excluded.csv']) == {'v2,0902'}
  gt = ava_frame_map.read_boxes_csv(files['gt.csv'], class_ids=[1, 2])
  assert list(gt) == ['v1,0902', 'v1,0903', 'v2,0902']
  np.testing.assert_allclose(gt['v1,0902'].boxes[1], [0.6, 0.6, 0.9, 0.9])
  assert list(gt['v1,0903'].labels) == [1, 2] and list(gt['v1,0902'].scores) == [1.0, 1.0]


@pytest.mark.parametrize('row,problem', [
    ('v1,0902,0.1,0.1,0.5,1', 'columns'), ('v1,0902,0.1,x,0.5,0.5,1,0.9', 'not a number'),
    ('v1,0902,0.1,0.1,0.5,0.5,1', 'score')])
def test_a_malformed_row_names_file_and_line(tmp_path, row, problem):
  path = tmp_path / 'bad.csv'
  path.write_text(f'v1,0902,{A},1,0.5\n{row}\n')
  with pytest.raises(UserError, match=rf'bad\.csv, line 2: .*{problem}'):
    ava_frame_map.read_boxes_csv(str(path), scored=True)


def test_written_detections_read_back(tmp_path):
  text = ava_frame_map.format_detections([('vid_a', 902, (0.12345, 0.2, 0.5, 0.75), 12, 0.987654321)])
  assert text == 'vid_a,0902,0.1235,0.2000,0.5000,0.7500,12,0.987654\n'
  path = tmp_path / 'detections.csv'
  path.write_text(text)
  boxes = ava_frame_map.read_boxes_csv(str(path), capacity=50, scored=True)['vid_a,0902']
  assert list(boxes.labels) == [12] and boxes.scores[0] == pytest.approx(0.987654)


# ------------------------------------------------------------------- ties
TIE_LABEL_MAP = 'item {\n  name: "one"\n  id: 1\n}\nitem {\n  name: "two"\n  id: 2\n}\n'
G_A = '0.0,0.25,0.5,0.75'
G_B = '0.0,0.125,0.5,0.625'  # above G_A: smaller y1
BETWEEN = '0.0,0.1875,0.5,0.6875'  # IoU 0.21875 / 0.28125 = 7/9 with G_A and with G_B, exactly
JUNK = '0.9,0.9,0.95,0.95'


def _write_all(tmp_path, **texts):
  out = {}
  for name, text in texts.items():
    (tmp_path / name).write_text(text)
    out[name] = str(tmp_path / name)
  return out


def test_tied_ground_truth_comes_in_the_official_heap_order(tmp_path):
  """Ground-truth rows all score 1, so the official reader's order of a key's boxes is the
  heap's: pushing (1, 1, y1=0.25, ...) for G_A, then (1, 1, y1=0.125, ...) for G_B moves
  G_B to the front, and the stable sort by -score keeps [G_B, G_A] (the file says G_A, G_B).

  Detections of class 1: BETWEEN at 0.9 (IoU 7/9 with both boxes: argmax takes the first,
  G_B: TP), then G_A itself at 0.8 (IoU 1 with G_A, 0.6 with G_B: argmax G_A, free: TP).
  Two TPs of two boxes: precision 1 at recall 1/2 and 1, AP = 1. In file order BETWEEN
  would take G_A and the 0.8 detection would find G_A taken (FP): AP 1/2.
  """
  files = _write_all(tmp_path, **{'lm.pbtxt': TIE_LABEL_MAP,
                                  'gt.csv': f'm,0902,{G_A},1,0\nm,0902,{G_B},1,1\n',
                                  'det.csv': f'm,0902,{BETWEEN},1,0.9\nm,0902,{G_A},1,0.8\n'})
  gt = ava_frame_map.read_boxes_csv(files['gt.csv'], [1, 2])['m,0902']
  np.testing.assert_allclose(gt.boxes, [[0.0, 0.125, 0.5, 0.625], [0.0, 0.25, 0.5, 0.75]])
  result = ava_frame_map.evaluate_files(files['gt.csv'], files['det.csv'], files['lm.pbtxt'])
  assert result['AP'][1] == 1.0 and result['mAP'] == 1.0


def test_a_full_key_evicts_the_smallest_tuple_of_the_tied_lowest_scores(tmp_path):
  """One key, 52 rows: a class-1 detection of the class-1 box at 0.5 (file row 1), 49
  class-2 rows at 0.5, a class-2 row at 0.9, and again the class-1 detection at 0.5.

  The official reader pushes the first 50 rows (all 0.5). Row 51 scores 0.9 > 0.5, the
  heap's smallest score: heapreplace pops the smallest tuple, (0.5, 1, ...) -- action 1
  sorts before action 2 -- so the class-1 detection is the one evicted, not the last row.
  Row 52 ties the smallest score 0.5 and is dropped (only a strictly higher score enters).
  Class 1 (one ground-truth box) is left without a detection: AP 0 (keeping the first 50
  rows in file order would keep it: AP 1). Class 2 has no ground truth: mAP = AP of class 1.
  """
  rows = [f'm,0902,{G_A},1,0.5'] + [f'm,0902,{JUNK},2,0.5'] * 49
  rows += [f'm,0902,{JUNK},2,0.9', f'm,0902,{G_A},1,0.5']
  files = _write_all(tmp_path, **{'lm.pbtxt': TIE_LABEL_MAP, 'gt.csv': f'm,0902,{G_A},1,0\n',
                                  'det.csv': '\n'.join(rows) + '\n'})
  kept = ava_frame_map.read_boxes_csv(files['det.csv'], [1, 2], capacity=50, scored=True)['m,0902']
  assert len(kept) == 50 and 1 not in kept.labels and kept.scores[0] == 0.9
  result = ava_frame_map.evaluate_files(files['gt.csv'], files['det.csv'], files['lm.pbtxt'])
  assert result['AP'][1] == 0.0 and result['num_detections'] == {1: 0, 2: 50}
  assert result['mAP'] == 0.0


def test_tied_scores_of_a_key_come_in_heap_array_order():
  """Rows (0.5, action 3), (0.5, 1), (0.5, 2), (0.7, 2): the heap array after the pushes is
  [(0.5,1), (0.5,3), (0.5,2), (0.7,2)] ((0.5,1) rises over (0.5,3); (0.5,2) and (0.7,2)
  stay under it); the stable sort by -score gives actions 2 (0.7), then 1, 3, 2 at 0.5."""
  box = (0.1, 0.1, 0.5, 0.5)
  rows = [('k', *box, action, score) for action, score in ((3, 0.5), (1, 0.5), (2, 0.5), (2, 0.7))]
  kept = ava_frame_map.keep_per_key(rows, capacity=50)['k']
  assert list(kept.labels) == [2, 1, 3, 2] and list(kept.scores) == [0.7, 0.5, 0.5, 0.5]


def test_duplicate_ground_truth_rows_are_two_boxes():
  """A ground-truth row given twice is two boxes for the official evaluator: the one
  detection matches the first, the second stays unmatched. Precision 1 at recall 1/2:
  AP 0.5 (1.0 if the duplicate were merged away)."""
  gt = ava_frame_map.keep_per_key([('k', 0.1, 0.1, 0.5, 0.5, 1, 1.0)] * 2)
  det = ava_frame_map.keep_per_key([('k', 0.1, 0.1, 0.5, 0.5, 1, 0.9)], capacity=50)
  assert ava_frame_map.frame_map(gt, det, [1])['AP'][1] == 0.5
