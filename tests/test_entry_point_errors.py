"""A user's mistake at any command ends in one message naming the problem and a non-zero exit.

The commands run in this process through ``errors.run`` (what their
``__main__`` does) where they can; ``avslowfast_jax.main`` and the absl tools
run as subprocesses, the way users start them, to check the whole path: status
2, the message as the last line of stderr, no traceback, nothing written.

Kinds covered: paths that are not there or not what they should be (data,
checkpoints to start from, exports, videos), remote paths that cannot be
reached (within a bounded time), data with more classes than the model,
config files that do not load, flag and override values of the wrong form,
flags that do not apply, unset fields, and messages of other libraries that
would give wrong advice.
"""

import json
import os
import re
import subprocess
import sys
import time
import types

from absl import flags
from ml_collections import config_flags
import pytest
import tensorflow as tf

from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax import cli, predict, preflight
from avslowfast_jax.studies import quickstart
from avslowfast_jax.tools import import_weights, inspect_clips, model_stats, transfer
from data_pipelines import errors, fs, prepare, shards, synthetic
from data_pipelines.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_command(main, argv, capsys):
  """Exit status and stderr of ``errors.run(main, argv)``."""
  with pytest.raises(SystemExit) as exit_info:
    errors.run(main, argv, prog='cmd')
  return exit_info.value.code, capsys.readouterr().err


def _write(path, text):
  path.write_text(text)
  return str(path)


def fake_prepared(path, labels, nouns=(), splits=('train', 'validation')) -> str:
  """The metadata of a prepared folder (no shards): what the checks before a run read."""
  path.mkdir(parents=True, exist_ok=True)
  (path / 'shards.json').write_text(json.dumps({
      'name': 'fake', 'fps': 30.0, 'short_side': 40, 'audio_sample_rate': 16000,
      'splits': {s: {'files': [], 'lengths': []} for s in splits}}))
  (path / 'label_map.json').write_text(json.dumps({'labels': list(labels),
                                                   'nouns': list(nouns)}))
  return str(path)


def project_config(spec, **fields):
  config = cli.load_config_file(os.path.join(REPO, spec))
  cli.set_fields(config, [f'{k}={v!r}' for k, v in fields.items()])
  return config


def _ava_files(d):
  """A label map and a ground-truth CSV of AVA's format."""
  pbtxt = _write(d / 'labels.pbtxt', 'item {\n  name: "stand"\n  id: 1\n}\n')
  gt = _write(d / 'gt.csv', 'vid,0902,0.1,0.1,0.5,0.5,1,0\n')
  return pbtxt, gt


# (command, argv built from tmp_path, what the message must say)
COMMAND_CASES = {
    'prepare: manifest header with other column names': (
        prepare.main,
        lambda d: ['--output_dir', str(d / 'out'), '--num_workers', '0', '--manifest',
                   _write(d / 'm.csv', 'video,class\nclip.mp4,dog\n')],
        r"m.csv:1: 'video' is neither a video file nor the header \"path,label"),
    'prepare: no video could be prepared': (
        prepare.main,
        lambda d: ['--output_dir', str(d / 'out'), '--num_workers', '0', '--manifest',
                   _write(d / 'm.csv', 'path,label\nmissing.mp4,dog\n')],
        r'none of the 1 videos could be prepared .*prepare_report.json'),
    'prepare: manifest listing nothing': (
        prepare.main,
        lambda d: ['--output_dir', str(d / 'out'), '--manifest',
                   _write(d / 'm.csv', 'path,label\n')],
        r'm.csv: lists no video'),
    'prepare: manifest that does not exist': (
        prepare.main,
        lambda d: ['--output_dir', str(d / 'out'), '--manifest', str(d / 'nope.csv')],
        r'--manifest .*nope.csv: no such file or folder'),
    'prepare: annotations of another dataset': (
        prepare.main,
        lambda d: ['--output_dir', str(d / 'out'), '--dataset', 'kinetics', '--video_dir',
                   str(d), '--annotations', _write(d / 'k.csv', 'path,label\na.mp4,dog\n')],
        r'k.csv: not a Kinetics CSV'),
    'inspect: config file that does not exist': (
        inspect_clips.main,
        lambda d: ['--data_dir', str(d), '--config', str(d / 'nope.py'), '--output',
                   str(d / 'x.npz')],
        r'nope.py: no such config file'),
    'inspect: folder without prepared data': (
        inspect_clips.main,
        lambda d: ['--data_dir', str(d), '--config',
                   f'{REPO}/avslowfast_jax/studies/configs/quickstart.py:avslowfast', '--output', str(d / 'x.npz')],
        r'holds no prepared data \(no shards.json\): prepare videos into it'),
    'synthetic: unknown class': (
        synthetic.main,
        lambda d: ['--output_dir', str(d), '--classes', 'unicorn', '--no_progress'],
        r"unknown class 'unicorn'"),
    'predict: a folder that is not an export': (
        predict.main,
        lambda d: ['--model', str(d), _write(d / 'v.mp4', '')],
        r'is not an export directory \(no signature.json\)'),
    'import_weights: checkpoint that does not exist': (
        import_weights.main,
        lambda d: ['import_weights', '--source=pyslowfast', f'--checkpoint={d}/nope.pyth',
                   f'--config={REPO}/configs/kinetics.py:tiny_slowfast_8x8_r50',
                   f'--output={d}/out'],
        r'nope.pyth|needs torch'),
    'import_weights: a file that is not a checkpoint': (
        import_weights.main,
        lambda d: ['import_weights', '--source=pyslowfast',
                   f'--checkpoint={_write(d / "notes.pyth", "not a checkpoint")}',
                   f'--config={REPO}/configs/kinetics.py:tiny_slowfast_8x8_r50',
                   f'--output={d}/out'],
        r'notes.pyth: not a checkpoint \(not a file torch.save writes\); expected a file '
        r'torch.save wrote|needs torch'),
    'prepare: AVA without its video folder': (
        prepare.main,
        lambda d: ['--dataset', 'ava', '--video_dir', str(d / 'no_videos'), '--output_dir',
                   str(d / 'out'), '--label_map', _ava_files(d)[0], '--ava_groundtruth',
                   f'train={d}/gt.csv', '--num_workers', '0'],
        r'--video_dir .*no_videos: no such file or folder'),
    'prepare: a video folder that is a file': (
        prepare.main,
        lambda d: ['--output_dir', str(d / 'out'), '--video_dir', _write(d / 'v.txt', ''),
                   '--manifest', _write(d / 'm.csv', 'path,label\nclip.mp4,dog\n')],
        r'--video_dir .*v.txt: a file, not a folder of videos'),
    'transfer: pretrained checkpoint that does not exist': (
        transfer.main,
        lambda d: ['--pretrained', str(d / 'nope'), '--dataset', 'ucf101', '--data_dir',
                   fake_prepared(d / 'ucf', ['a'] * 101, splits=('train', 'test')),
                   '--workdir', str(d / 'run'), '--splits', '1'],
        r'--pretrained=.*nope: no such file or folder; expected a training workdir'),
    'quickstart: an override the config does not have': (
        quickstart.main,
        lambda d: ['--workdir', str(d / 'qs'), '--override=--config.train.totl_steps=3'],
        r"--override: --config.train.totl_steps: train has no field 'totl_steps'; did you "
        r"mean 'total_steps'"),
    'quickstart: a tuple override without its quotes': (
        quickstart.main,
        lambda d: ['--workdir', str(d / 'qs'),
                   '--override=--config.model.audio_lateral_stages=(res4,)'],
        r'--config.model.audio_lateral_stages=\(res4,\): model.audio_lateral_stages is a '
        r'tuple; give a Python tuple in quotes'),
    'prepare: a frame rate of 0': (
        prepare.main,
        lambda d: ['--output_dir', str(d / 'out'), '--fps', '0', '--manifest',
                   _write(d / 'm.csv', 'path,label\nclip.mp4,dog\n')],
        r'--fps 0.0: expected a positive frame rate'),
    'inspect: no clips asked for': (
        inspect_clips.main,
        lambda d: ['--data_dir', str(d), '--config', 'configs/kinetics.py:avslowfast_4x16_r50',
                   '--num_clips', '0', '--output', str(d / 'x.npz')],
        r'--num_clips 0: expected at least 1'),
    'predict: top 0': (
        predict.main,
        lambda d: ['--model', str(d), '--top_k', '0', 'v.mp4'],
        r'--top_k 0: expected at least 1'),
    'import_weights: unknown config variant': (
        import_weights.main,
        lambda d: ['import_weights', '--source=pyslowfast', f'--checkpoint={d}/x.pyth',
                   f'--config={REPO}/configs/kinetics.py:avslowfast_3x3_r77', f'--output={d}/o'],
        r"unknown variant 'avslowfast_3x3_r77'"),
}


# Mistakes found by doing the work, whose message points at the report the work wrote.
WRITES_ITS_REPORT = ('prepare: no video could be prepared',)


@pytest.mark.parametrize('case', sorted(COMMAND_CASES))
def test_command_mistake_is_one_message(case, tmp_path, capsys, monkeypatch):
  main, argv, message = COMMAND_CASES[case]
  # transfer sets up this process for its runs (compilation cache, CPU memory) first.
  monkeypatch.setattr(transfer, 'set_up_process', lambda workdir: None)
  argv = argv(tmp_path)
  before = sorted(os.listdir(tmp_path))
  code, err = run_command(main, argv, capsys)
  assert code == errors.EXIT_USER_ERROR
  # Progress lines may come first (prepare's report of what it skipped); the error is last.
  assert err.strip().splitlines()[-1].startswith('cmd: error: '), err
  assert re.search(message, err.strip().splitlines()[-1]), err
  assert 'Traceback' not in err
  if case not in WRITES_ITS_REPORT:
    assert sorted(os.listdir(tmp_path)) == before, 'the command wrote before it failed'


def test_quickstart_rejects_unknown_variant(capsys):
  code, err = run_command(quickstart.main, ['--variants', 'avslowfast,visual'], capsys)
  assert code == 2 and "unknown variants ['visual']" in err
  code, err = run_command(quickstart.main, ['--num_videos', '8', '--num_val_videos', '8'],
                          capsys)
  assert code == 2 and '--num_val_videos must be positive and below --num_videos' in err


def _config_flags(argv):
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  return values


@pytest.mark.parametrize('argv, message', [
    (['--config', 'configs/kinetics.py:avslowfast_3x3_r77'],
     r"unknown variant 'avslowfast_3x3_r77'.*avslowfast_4x16_r50"),
    (['--config', 'avslowfast_jax/studies/configs/quickstart.py:stereo'],
     r"unknown quickstart variant 'stereo': expected one of avslowfast, slowfast, audio"),
    (['--config', 'avslowfast_jax/studies/configs/quickstart.py', '--config.train.totl_steps=3'],
     r"--config.train.totl_steps: train has no field 'totl_steps'; did you mean 'total_steps'"),
    (['--config', 'avslowfast_jax/studies/configs/quickstart.py', '--config.trian.total_steps=3'],
     r"--config.trian.total_steps: the config has no field 'trian'; did you mean 'train'"),
    (['--config', 'avslowfast_jax/studies/configs/quickstart.py', '--config.train.total_steps=abc'],
     r'--config.train.total_steps=abc: expected an integer'),
    (['--config', 'configs/nope.py'], r'--config configs/nope.py: no such config file'),
    # A config file that does not load: the file and line.
    (['--config', 'SYNTAX'], r'broken.py:2: syntax error in the config file'),
    (['--config', 'NO_GET_CONFIG'], r'noget.py: not a config file: it defines no get_config'),
    (['--config', 'RAISES:stereo'],
     r"raises.py:3: get_config\('stereo'\) failed: ValueError: no variant stereo$"),
    # Values of the wrong form, the field named and the form expected.
    (['--config', 'configs/kinetics.py:avslowfast_4x16_r50',
      '--config.model.audio_lateral_stages=(res4,)'],
     r"--config.model.audio_lateral_stages=\(res4,\): model.audio_lateral_stages is a tuple; "
     r"give a Python tuple in quotes, e.g. --config.model.audio_lateral_stages=\"\('res3', "
     r"'res4'\)\""),
    (['--config', 'configs/kinetics.py:avslowfast_4x16_r50',
      '--config.model.nonlocal_stages=res4,res5'],
     r'--config.model.nonlocal_stages=res4,res5: model.nonlocal_stages is a tuple'),
    (['--config', 'configs/kinetics.py:avslowfast_4x16_r50',
      '--config.data.train_jitter_scales=256x320'],
     r'--config.data.train_jitter_scales=256x320: data.train_jitter_scales is a tuple; give a '
     r'Python tuple in quotes, e.g. --config.data.train_jitter_scales="\(256, 320\)"'),
    (['--config', 'configs/kinetics.py:avslowfast_4x16_r50', '--config.train.base_lr=1e-2,3'],
     r'--config.train.base_lr=1e-2,3: expected a number'),
])
def test_config_mistakes_name_the_field_or_variant(argv, message, monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)
  files = {'SYNTAX': _write(tmp_path / 'broken.py', 'import ml_collections\ndef get_config(:\n'),
           'NO_GET_CONFIG': _write(tmp_path / 'noget.py', 'X = 1\n'),
           'RAISES': _write(tmp_path / 'raises.py', 'def get_config(variant=None):\n  if variant:'
                            '\n    raise ValueError(f"no variant {variant}")\n')}
  def named(arg):  # the file behind a placeholder, e.g. RAISES:stereo -> .../raises.py:stereo
    for key, path in files.items():
      if arg.startswith(key):
        return path + arg[len(key):]
    return arg

  argv = ['main', *map(named, argv)]
  with pytest.raises(UserError, match=message):
    cli.parse_flags(argv, _config_flags(argv))


def test_damaged_data_files_are_named(tmp_path):
  (tmp_path / 'shards.json').write_text('{"splits": {"train": ')
  with pytest.raises(UserError, match=r'shards.json: damaged JSON file'):
    shards.read_metadata(str(tmp_path))
  with pytest.raises(UserError, match=r'does not exist \(no shards.json\)'):
    shards.read_metadata(str(tmp_path / 'nope'))
  with pytest.raises(UserError, match=r'^no prepared-data folder given \(the path is empty\)'):
    shards.read_metadata('')
  path = str(tmp_path / 'train-00000.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(3):
      writer.write(b'x' * (100 + i))
  assert len(shards.record_offsets(path)) == 3
  with open(path, 'r+b') as f:
    f.truncate(200)
  with pytest.raises(UserError, match=r'train-00000.tfrecord: damaged shard file \(truncated'):
    shards.record_offsets(path)
  with pytest.raises(UserError, match=r'nope.tfrecord: shard file missing'):
    shards.record_offsets(str(tmp_path / 'nope.tfrecord'))


# ------------------------------------------------- checks before a run builds anything
CLASSES_CASES = {
    # (config, fields, labels, nouns, message)
    'Kinetics-600 data, a 400-class model': (
        'configs/kinetics.py:tiny_avslowfast_4x16_r50', {}, 600, 0,
        r'label_map.json: the data has 600 classes but config.model.num_classes=400 '
        r"\(task 'classification'\): labels 400..599 \('c400', ...\) would train as no class; "
        r'set --config.model.num_classes=600'),
    'EPIC nouns beyond model.num_nouns': (
        'configs/epic_kitchens.py:tiny_avslowfast_8x8_r101', {}, 125, 400,
        r'the data has 400 noun classes but config.model.num_nouns=352'),
    'EPIC noun model': (
        'configs/epic_kitchens.py:tiny_avslowfast_8x8_r101_noun', {}, 125, 353,
        r"the data has 353 noun classes but config.model.num_classes=352 \(task 'noun'\): "
        r"label 352 \('c352'\) would train as no class"),
    'Charades multi-hot beyond num_classes': (
        'configs/charades.py:tiny_avslowfast_16x8_r101_nl', {}, 160, 0,
        r'the data has 160 classes but config.model.num_classes=157 \(task .multilabel.\)'),
    'AVA actions beyond num_classes': (
        'configs/ava.py:tiny_avslowfast_4x16_r50', {}, 81, 0,
        r"the data has 81 classes but config.model.num_classes=80 \(task 'ava'\)"),
}


@pytest.mark.parametrize('case', sorted(CLASSES_CASES))
def test_data_with_more_classes_than_the_model_is_refused(case, tmp_path):
  """Labels at or above the model's class count would train as all-zero targets (loss near
  0, exit 0): training and evaluation refuse such data before they build anything."""
  spec, fields, labels, nouns, message = CLASSES_CASES[case]
  data = fake_prepared(tmp_path / 'data', [f'c{i}' for i in range(labels)],
                       [f'c{i}' for i in range(nouns)])
  config = project_config(spec, **{'data.data_dir': data, **fields})
  workdir = str(tmp_path / 'run')
  with pytest.raises(UserError, match=message):
    preflight.check_training(config, workdir)
  with pytest.raises(UserError, match=message):
    preflight.check_evaluation(config, workdir)
  assert not os.path.exists(workdir)


def test_data_the_model_fits_passes(tmp_path):
  """Fewer classes than the model is fine (a subset), and pretraining reads no labels."""
  data = fake_prepared(tmp_path / 'data', ['a', 'b', 'c'])
  preflight.check_training(project_config('configs/kinetics.py:tiny_avslowfast_4x16_r50',
                                          **{'data.data_dir': data}), str(tmp_path / 'run'))
  many = fake_prepared(tmp_path / 'many', [f'c{i}' for i in range(700)])
  preflight.check_training(project_config('configs/pretrain.py:tiny_avslowfast_8x8_r50',
                                          **{'data.data_dir': many}), str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_unset_data_dir_and_split_are_named(tmp_path):
  config = project_config('configs/kinetics.py:tiny_avslowfast_4x16_r50')
  with pytest.raises(UserError, match=r'^config.data.data_dir is not set: training needs '
                     r'prepared data; give --config.data.data_dir=DIR'):
    preflight.check_training(config, str(tmp_path / 'run'))
  data = fake_prepared(tmp_path / 'data', ['a'], splits=('train',))
  config = project_config('configs/kinetics.py:tiny_avslowfast_4x16_r50',
                          **{'data.data_dir': data})
  with pytest.raises(UserError, match=r"config.data.eval_split='validation': .*data has no such "
                     r'split \(it has train\)'):
    preflight.check_evaluation(config, str(tmp_path / 'run'))
  with pytest.raises(UserError, match=r"config.model.fusion='a_s_f': expected one of"):
    preflight.check_training(project_config('configs/kinetics.py:tiny_avslowfast_4x16_r50',
                                            **{'data.data_dir': data, 'model.fusion': 'a_s_f'}),
                             str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_checkpoint_to_start_from_is_checked_first(tmp_path):
  """``train.init_from`` (and ``transfer --pretrained``): named before any model is built."""
  data = fake_prepared(tmp_path / 'data', ['a', 'b'])
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'no_steps' / 'checkpoints').mkdir(parents=True)
  (tmp_path / 'steps' / '300' / 'default').mkdir(parents=True)
  (tmp_path / 'steps' / '600' / 'default').mkdir(parents=True)
  cases = {
      str(tmp_path / 'nope'): r'config.train.init_from=.*nope: no such file or folder; expected '
                              r'a training workdir \(with checkpoints/\), a checkpoint step',
      _write(tmp_path / 'file.pyth', 'x'): r'file.pyth: a file, not a checkpoint folder',
      str(tmp_path / 'empty'): r'empty: not a checkpoint; expected',
      str(tmp_path / 'no_steps'): r'no_steps: a workdir without checkpoints',
      str(tmp_path / 'steps'): r'steps: not a checkpoint \(it holds checkpoint steps \[300, 600\]'
                               r': give one of them, e.g. .*steps/600',
  }
  for path, message in cases.items():
    config = project_config('configs/kinetics.py:tiny_avslowfast_4x16_r50',
                            **{'data.data_dir': data, 'train.init_from': path})
    with pytest.raises(UserError, match=message):
      preflight.check_training(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')
  # What it takes: an export's weights, an orbax item (import_weights' variables/).
  (tmp_path / 'export').mkdir()
  (tmp_path / 'export' / 'weights.npz').write_bytes(b'')
  (tmp_path / 'variables').mkdir()
  (tmp_path / 'variables' / '_METADATA').write_text('{}')
  for path in ('export', 'variables'):
    ckpt_lib.check_weights_source(str(tmp_path / path), 'config.train.init_from')


# --------------------------------------------------------------------- remote paths
ACCESS_MESSAGE = r'cannot reach gs://|no such bucket|no answer from gs://'


def test_unreachable_bucket_ends_in_seconds():
  """A gs:// path where there is no network, credentials or bucket (this test runs where
  there is none of them: no network): one UserError naming the path, in bounded time."""
  # TensorFlow is imported (top of this module): its import is not part of the bound.
  path = f'gs://avslowfast-no-such-bucket-{os.getpid()}/k400_shards'
  started = time.time()
  with pytest.raises(UserError) as error:
    fs.exists(fs.join(path, 'shards.json'))
  elapsed = time.time() - started
  assert elapsed < fs.ACCESS_TIMEOUT_S + 5, elapsed
  message = str(error.value)
  assert message.startswith(f'{path}/shards.json: ') and re.search(ACCESS_MESSAGE, message)
  assert '\n' not in message
  # Checked once per bucket: the next access fails without a new probe.
  with pytest.raises(UserError):
    shards.read_metadata(path)


@pytest.mark.parametrize('answer, message', [
    ('hang', r'gs://slow-bucket/x: no answer from gs://slow-bucket within 0.5 s \(no network, '
             r'or the storage service does not respond\)'),
    (tf.errors.PermissionDeniedError(None, None, 'HTTP 403: caller does not have '
                                                 'storage.objects.get access'),
     r'gs://slow-bucket/x: cannot reach gs://slow-bucket: no access \(permission denied\): '
     r'HTTP 403'),
    (tf.errors.UnauthenticatedError(None, None, 'HTTP 401: Anonymous caller'),
     r'cannot reach gs://slow-bucket: no credentials \(sign in'),
    (tf.errors.FailedPreconditionError(None, None, "Error executing an HTTP request: libcurl "
                                       "code 6 meaning 'Could not resolve hostname', error "
                                       'details: Could not resolve host: www.googleapis.com'),
     r"no network \(cannot resolve www.googleapis.com's address\)"),
    ('no bucket', r'gs://slow-bucket/x: no such bucket gs://slow-bucket'),
])
def test_remote_access_failures_are_named(answer, message, monkeypatch):

  def probe(path):
    if answer == 'hang':
      time.sleep(10)
    if answer == 'no bucket':
      return False
    raise answer

  monkeypatch.setattr(fs, '_probe', probe)
  monkeypatch.setattr(fs, '_reached', set())
  started = time.time()
  with pytest.raises(UserError, match=message):
    fs.check_access('gs://slow-bucket/x', timeout=0.5)
  assert time.time() - started < 3


def test_reachable_bucket_is_probed_once(monkeypatch):
  calls = []
  monkeypatch.setattr(fs, '_probe', lambda path: calls.append(path) or True)
  monkeypatch.setattr(fs, '_reached', set())
  fs.check_access('gs://fine/a')
  fs.check_access('gs://fine/b/c')
  fs.check_access('/local/path')
  fs.check_access('ram://anything')
  assert calls == ['gs://fine/a']


# ----------------------------------------------------------- flags that do not apply
def test_predict_refuses_detection_flags_for_a_classification_export(tmp_path, monkeypatch,
                                                                     capsys):
  config = project_config('avslowfast_jax/studies/configs/quickstart.py:avslowfast')
  model = types.SimpleNamespace(config=config.to_dict(), input_names=('slow', 'fast', 'audio'),
                                signature={}, label_map={})
  monkeypatch.setattr(predict.export, 'load', lambda path: model)
  video = _write(tmp_path / 'v.mp4', '')
  for flags_given, named in ((['--boxes', 'b.csv'], '--boxes'),
                             (['--keyframe_sec', '3.0', '--png', 'k.png'],
                              '--keyframe_sec and --png')):
    code, err = run_command(predict.main, ['--model', str(tmp_path), *flags_given, video],
                            capsys)
    assert code == 2 and 'Traceback' not in err
    assert re.search(f'^cmd: error: {named}: for a detection export \\(task .ava.\\); .* is a '
                     "'classification' export, which scores whole videos$", err.strip()), err


def test_model_stats_view_names_the_form():
  assert model_stats.parse_view(['256', '320']) == (256, 320)
  assert model_stats.parse_view(['224']) == 224 and model_stats.parse_view(None) is None
  for bad in (['256x320'], ['1', '2', '3'], ['0']):
    with pytest.raises(UserError, match=r'--view=.*: expected SIZE or HEIGHT,WIDTH in pixels, '
                       r'e.g. --view=224 or --view=256,320'):
      model_stats.parse_view(bad)


def _console(cmd, env=None):
  """Exit status and stderr lines of a command run the way a user runs it (TensorFlow's log
  level as a user has it: unset)."""
  env = dict(env or os.environ)
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  env['PYTHONPATH'] = REPO
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def test_absl_tools_and_console():
  """model_stats (absl) and predict, as subprocesses side by side: ``--help`` exits 0, a
  flag of the wrong form or a missing --config is one line, and TensorFlow's start-up
  banners (oneDNN, absl's InitializeLog notice) do not reach the console."""
  stats = [sys.executable, '-m', 'avslowfast_jax.tools.model_stats']
  cases = {
      'help': (stats + ['--help'], 0, None),
      'memory without config': (stats + ['--memory'], 2, r'--config is required, e.g. --config '
                                r'configs/kinetics.py:avslowfast_4x16_r50'),
      'view': (stats + ['--config', 'configs/kinetics.py:avslowfast_4x16_r50', '--view',
                        '256x320'], 2, r'--view=256x320: expected SIZE or HEIGHT,WIDTH'),
      'predict': ([sys.executable, '-m', 'avslowfast_jax.predict', '--model', '/no/export',
                   'v.mp4'], 2, r'/no/export: no such export directory'),
  }
  procs = {name: _console(cmd) for name, (cmd, _, _) in cases.items()}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=300)
    _, code, message = cases[name]
    assert proc.returncode == code, (name, err[-3000:])
    if message is None:
      assert 'model_stats' in out and '--view' in out and not err.strip(), (name, err)
      continue
    # The command's own line and nothing else: no banner before it, no traceback.
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), (name, err[-3000:])
    assert lines[0].startswith(f'{cases[name][0][2]}: error: '), lines  # the module's name


def test_launch_script_error_is_the_last_line():
  result = subprocess.run(['bash', 'launch/local.sh', '--workdir', '/tmp/x'], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      "local.sh: error: --config is required (e.g. --config "
      "configs/kinetics.py:avslowfast_4x16_r50) (see 'local.sh --help')")


@pytest.mark.slow
def test_main_ends_mistakes_without_traceback(tmp_path):
  """Mistakes of ``python -m avslowfast_jax.main``, run side by side: exit 2, the message as
  the last line of stderr, no traceback, nothing written into the workdir; ``--help`` 0."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  base = [sys.executable, '-m', 'avslowfast_jax.main', '--workdir', str(workdir)]
  quick = f'{REPO}/avslowfast_jax/studies/configs/quickstart.py'
  data = fake_prepared(tmp_path / 'data', [f'c{i}' for i in range(8)])
  wide = fake_prepared(tmp_path / 'wide', [f'c{i}' for i in range(12)])
  cases = {
      'variant': (['--config', f'{REPO}/configs/kinetics.py:avslowfast_3x3_r77'],
                  "unknown variant 'avslowfast_3x3_r77'"),
      'override': (['--config', quick, '--config.train.batch_szie=32'],
                   "--config.train.batch_szie: train has no field 'batch_szie'; did you mean "
                   "'batch_size'?"),
      'data': (['--config', quick, f'--config.data.data_dir={tmp_path}/nodata'],
               f'{tmp_path}/nodata does not exist (no shards.json)'),
      'unset data': (['--config', quick], 'config.data.data_dir is not set: training needs '
                     'prepared data; give --config.data.data_dir=DIR'),
      'classes': (['--config', quick, f'--config.data.data_dir={wide}'],
                  f'{wide}/label_map.json: the data has 12 classes but '
                  'config.model.num_classes=8'),
      'bucket': (['--config', quick, '--config.data.data_dir=gs://avslowfast-no-such-bucket/d'],
                 'gs://avslowfast-no-such-bucket/d: '),
      'eval': (['--config', quick, '--mode', 'eval', f'--config.data.data_dir={data}'],
               'no latest checkpoint under'),
      'help': (['--help'], None),
  }
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  started = time.time()
  procs = {name: subprocess.Popen(base + argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
           for name, (argv, _) in cases.items()}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=600)
    if cases[name][1] is None:
      assert proc.returncode == 0 and '--config' in out and '--workdir' in out, err[-3000:]
      continue
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 2, (name, err[-3000:])
    assert last.startswith('avslowfast_jax.main: error: ') and cases[name][1] in last, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
    # The console: at most the one line of the run's start before the message.
    assert len(err.strip().splitlines()) <= 2, err[-3000:]
  assert not os.listdir(workdir)  # nothing ran, nothing was written
  assert time.time() - started < 300
