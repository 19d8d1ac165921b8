"""``prepare --runner beam``: Beam's DirectRunner writes exactly what the local runner writes.

Needs the ``beam`` extra (.ci/run installs it). The Beam run writes to TensorFlow's
in-memory ``ram://`` filesystem, as a Dataflow job writes to ``gs://``; the
DirectRunner runs its workers in this process, where ``ram://`` lives.
"""

import pytest

from data_pipelines import adapters, frame_index, fs, prepare
from data_pipelines.video_io import write_video
import data_testing

beam = pytest.importorskip('apache_beam')

NAMES = ('good', 'silent', 'short_audio', 'zero', 'corrupt')


@pytest.fixture(scope='module')
def manifest(tmp_path_factory):
  """A manifest of 3 good and 2 bad videos over two splits."""
  root = tmp_path_factory.mktemp('beam_videos')
  paths = {name: str(root / f'{name}.mp4') for name in NAMES}
  write_video(paths['good'], data_testing.frames(40, 0), 30, data_testing.tone(40 / 30))
  write_video(paths['silent'], data_testing.frames(40, 1), 30, None)
  write_video(paths['short_audio'], data_testing.frames(40, 3), 30, data_testing.tone(0.5))
  open(paths['zero'], 'wb').close()
  with open(paths['corrupt'], 'wb') as f:
    f.write(b'\x00\x00\x00\x18ftypmp42' + bytes(4000))
  splits = ('train', 'train', 'validation', 'train', 'validation')
  path = root / 'manifest.csv'
  path.write_text('path,label,split\n' + ''.join(
      f'{name}.mp4,{"ab"[i % 2]},{split}\n' for i, (name, split) in enumerate(zip(NAMES, splits))))
  return str(path)


def _prepared(out):
  """Every shard file's bytes, and the report without its timing."""
  files = {name: fs.read_bytes(fs.join(out, name)) for name in fs.listdir(out)
           if '.tfrecord-' in name and not name.endswith(frame_index.SUFFIX)}
  for name in fs.listdir(out):  # npz files hold their write time: compare the arrays
    if name.endswith(frame_index.SUFFIX):
      files[name] = {k: v.tolist() for k, v in fs.load_npz(fs.join(out, name)).items()}
  report = fs.read_json(fs.join(out, 'prepare_report.json'))
  del report['summary']['elapsed_sec']
  meta = {name: fs.read_text(fs.join(out, name))
          for name in ('shards.json', 'label_map.json', 'dataset_info.json', 'features.json')}
  return files, report, meta


def test_direct_runner_matches_local_runner_and_writes_to_a_bucket(manifest, tmp_path):
  local = str(tmp_path / 'local')
  items, labels, _ = adapters.load_dataset('manifest', [manifest], str(tmp_path))
  prepare.prepare(items, local, name='toy', label_names=labels, runner='local', num_workers=0,
                  options=prepare.PrepareOptions(short_side=32, min_frames=16),
                  videos_per_shard=2, verbose=False)
  # The command line, as a Dataflow job is started (README), into a "bucket".
  bucket = 'ram://beam-bucket/k400'
  prepare.main(['--output_dir', bucket, '--manifest', manifest, '--name', 'toy',
                '--short_side', '32', '--min_frames', '16', '--videos_per_shard', '2',
                '--runner', 'beam', '--beam_options=--runner=DirectRunner '
                '--direct_num_workers=2 --direct_running_mode=multi_threading'])
  local_files, local_report, local_meta = _prepared(local)
  beam_files, beam_report, beam_meta = _prepared(bucket)
  shard_names = ['toy-train.tfrecord-00000-of-00002', 'toy-train.tfrecord-00001-of-00002',
                 'toy-validation.tfrecord-00000-of-00001']
  assert sorted(beam_files) == sorted(local_files) == sorted(
      shard_names + [n + frame_index.SUFFIX for n in shard_names])
  for name, data in local_files.items():
    assert beam_files[name] == data, name  # the same examples, byte for byte
  assert beam_report == local_report
  assert beam_report['summary']['num_written'] == 3
  assert beam_report['summary']['num_skipped'] == 2
  assert beam_meta == local_meta
