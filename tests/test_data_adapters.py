"""Adapters parse each dataset's real annotation format."""

import os

import pytest

from data_pipelines import adapters


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  return path


def _touch(path):
  _write(path, '')


def test_manifest_names_indices_segments_and_multilabel(tmp_path):
  manifest = _write(str(tmp_path / 'm.csv'),
                    'path,label,start_sec,end_sec,split\n'
                    'a.mp4,dog,,,train\n'
                    'sub/b.mkv,cat;dog,1.5,4.0,validation\n'
                    'c.webm,bird,,,\n')
  items, labels = adapters.load_manifest(manifest)
  assert labels == ['bird', 'cat', 'dog']
  assert [it.labels for it in items] == [[2], [1, 2], [0]]
  assert [it.split for it in items] == ['train', 'validation', 'train']
  assert items[1].path == str(tmp_path / 'sub' / 'b.mkv')
  assert (items[1].start_sec, items[1].end_sec) == (1.5, 4.0)
  indexed = _write(str(tmp_path / 'n.csv'), '/v/x.mp4,3\n/v/y.mp4,0;1\n')
  items, labels = adapters.load_manifest(indexed)
  assert labels == ['0', '1', '2', '3'] and [it.labels for it in items] == [[3], [0, 1]]
  with pytest.raises(adapters.AnnotationError, match='n.csv'):
    adapters.load_manifest(_write(str(tmp_path / 'n.csv'), 'only_one_field\n'))


def test_kinetics_csv_and_file_naming(tmp_path):
  videos = tmp_path / 'videos'
  _touch(str(videos / 'abseiling' / '---QUuC4vJs_000084_000094.mp4'))
  _touch(str(videos / '--07WQ2iBlw_000001_000011.mkv'))
  csv_path = _write(str(tmp_path / 'train.csv'),
                    'label,youtube_id,time_start,time_end,split\n'
                    'abseiling,---QUuC4vJs,84,94,train\n'
                    '"playing drums",--07WQ2iBlw,1,11,val\n'
                    'tickling,--33Lscn6sk,4,14,train\n')
  items, labels = adapters.load_kinetics([csv_path], str(videos))
  assert labels == ['abseiling', 'playing drums', 'tickling']
  assert items[0].path.endswith('abseiling/---QUuC4vJs_000084_000094.mp4')
  assert items[1].path.endswith('--07WQ2iBlw_000001_000011.mkv') and items[1].split == 'validation'
  assert items[2].path == str(videos / '--33Lscn6sk_000004_000014.mp4')  # missing: reported later
  assert [it.labels for it in items] == [[0], [1], [2]]
  # Kinetics-Sounds keeps only the paper's 32 classes and uses them as the label map.
  items, labels = adapters.load_kinetics_sounds([csv_path], str(videos))
  assert len(labels) == 32 and labels[0] == 'blowing nose'
  assert [it.video_id for it in items] == ['--07WQ2iBlw_000001_000011', '--33Lscn6sk_000004_000014']
  assert items[0].labels == [labels.index('playing drums')]
  # Kinetics test CSVs have no label column.
  test_csv = _write(str(tmp_path / 'test.csv'),
                    'youtube_id,time_start,time_end,split\nabc,0,10,test\n')
  items, _ = adapters.load_kinetics([test_csv], str(videos))
  assert items[0].labels == [] and items[0].split == 'test'


def test_epic_kitchens_55_segments(tmp_path):
  csv_path = _write(str(tmp_path / 'EPIC_train_action_labels.csv'),
                    'uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,'
                    'start_frame,stop_frame,verb,verb_class,noun,noun_class,all_nouns,'
                    'all_noun_classes\n'
                    '0,P01,P01_01,open door,00:00:00.14,00:00:03.37,8,202,open,3,door,8,'
                    '[\'door\'],[8]\n'
                    '1,P01,P01_01,turn on light,00:01:04.37,00:01:05.07,3862,3904,turn-on,6,'
                    'light,113,[\'light\'],[113]\n')
  items, verbs, nouns = adapters.load_epic_kitchens_55(csv_path, str(tmp_path / 'videos'))
  assert items[0].start_sec == pytest.approx(0.14) and items[0].end_sec == pytest.approx(3.37)
  assert items[1].start_sec == pytest.approx(64.37) and items[1].end_sec == pytest.approx(65.07)
  assert [it.labels for it in items] == [[3], [6]] and [it.noun for it in items] == [8, 113]
  assert verbs[3] == 'open' and nouns[113] == 'light' and len(nouns) == 114
  assert items[0].path.endswith(os.path.join('P01', 'P01_01.MP4'))
  assert items[0].video_id != items[1].video_id


def test_charades_multilabel(tmp_path):
  csv_path = _write(str(tmp_path / 'Charades_v1_train.csv'),
                    'id,subject,scene,quality,relevance,verified,script,objects,descriptions,'
                    'actions,length\n'
                    '46GP8,HR43,Kitchen,6,7,Yes,"A person cooking, then eating.",food;dish,'
                    '"A person cooks food.",c092 11.90 21.20;c147 0.00 12.60,24.83\n'
                    'N11GT,0KZ7,Stairs,6,7,Yes,"A person walks.",stairs,"walks",,17.0\n')
  classes = _write(str(tmp_path / 'Charades_v1_classes.txt'),
                   'c000 Holding some clothes\nc092 Someone is cooking\n')
  items, names = adapters.load_charades(csv_path, str(tmp_path), 'train', classes)
  assert [it.video_id for it in items] == ['46GP8', 'N11GT']
  assert items[0].labels == [92, 147] and items[1].labels == []
  assert len(names) == 157 and names[92] == 'Someone is cooking' and names[1] == 'c001'


def test_ucf101_and_hmdb51_official_splits(tmp_path):
  ucf = tmp_path / 'ucfTrainTestlist'
  _write(str(ucf / 'classInd.txt'), '1 ApplyEyeMakeup\n2 ApplyLipstick\n')
  _write(str(ucf / 'trainlist01.txt'), 'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n'
                                       'ApplyLipstick/v_ApplyLipstick_g08_c02.avi 2\n')
  _write(str(ucf / 'testlist01.txt'), 'ApplyLipstick/v_ApplyLipstick_g01_c01.avi\n')
  items, labels = adapters.load_ucf101(str(ucf), str(tmp_path / 'UCF-101'))
  assert labels == ['ApplyEyeMakeup', 'ApplyLipstick']
  assert [(it.split, it.labels) for it in items] == [('train', [0]), ('train', [1]), ('test', [1])]
  assert items[2].path.endswith('ApplyLipstick/v_ApplyLipstick_g01_c01.avi')

  hmdb = tmp_path / 'testTrainMulti_7030_splits'
  _write(str(hmdb / 'brush_hair_test_split1.txt'),
         'April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n'
         'American_History_X_brush_hair_h_cm_np1_le_goo_1.avi 2 \n'
         'Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \n')
  cartwheel = 'Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi'
  _write(str(hmdb / 'cartwheel_test_split1.txt'), f'{cartwheel} 2 \n')
  _write(str(hmdb / 'cartwheel_test_split2.txt'), f'{cartwheel} 1 \n')
  items, labels = adapters.load_hmdb51(str(hmdb), str(tmp_path / 'hmdb51'), fold=1)
  assert labels == ['brush_hair', 'cartwheel']
  assert [(it.split, it.labels) for it in items] == [('train', [0]), ('test', [0]), ('test', [1])]
  assert items[0].path.endswith('brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi')


def test_epic_timestamp_parsing():
  assert adapters.parse_timestamp('01:02:03.50') == pytest.approx(3723.5)
  assert adapters.parse_timestamp('12.25') == 12.25
