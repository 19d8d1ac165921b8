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
