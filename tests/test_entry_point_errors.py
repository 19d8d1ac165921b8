"""A user's mistake at any command ends in one message naming the problem and a non-zero exit.

The commands run in this process through ``errors.run`` (what their
``__main__`` does); ``avslowfast_jax.main`` runs as a subprocess, the way users
start it, to check the whole path: status 2 and no traceback.
"""

import os
import re
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest
import tensorflow as tf

from avslowfast_jax import cli, predict
from avslowfast_jax.studies import quickstart
from avslowfast_jax.tools import import_weights, inspect_clips
from data_pipelines import errors, prepare, shards, synthetic
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
    'import_weights: unknown config variant': (
        import_weights.main,
        lambda d: ['import_weights', '--source=pyslowfast', f'--checkpoint={d}/x.pyth',
                   f'--config={REPO}/configs/kinetics.py:avslowfast_3x3_r77', f'--output={d}/o'],
        r"unknown variant 'avslowfast_3x3_r77'"),
}


@pytest.mark.parametrize('case', sorted(COMMAND_CASES))
def test_command_mistake_is_one_message(case, tmp_path, capsys):
  main, argv, message = COMMAND_CASES[case]
  code, err = run_command(main, argv(tmp_path), capsys)
  assert code == errors.EXIT_USER_ERROR
  # Progress lines may come first (prepare's report of what it skipped); the error is last.
  assert err.strip().splitlines()[-1].startswith('cmd: error: '), err
  assert re.search(message, err), err
  assert 'Traceback' not in err


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
     r'--config.train.total_steps=abc: invalid literal'),
    (['--config', 'configs/nope.py'], r'--config configs/nope.py: no such config file'),
])
def test_config_mistakes_name_the_field_or_variant(argv, message, monkeypatch):
  monkeypatch.chdir(REPO)
  argv = ['main', *argv]
  with pytest.raises(UserError, match=message):
    cli.parse_flags(argv, _config_flags(argv))


def test_damaged_data_files_are_named(tmp_path):
  (tmp_path / 'shards.json').write_text('{"splits": {"train": ')
  with pytest.raises(UserError, match=r'shards.json: damaged JSON file'):
    shards.read_metadata(str(tmp_path))
  with pytest.raises(UserError, match=r'does not exist \(no shards.json\)'):
    shards.read_metadata(str(tmp_path / 'nope'))
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


@pytest.mark.slow
def test_main_ends_mistakes_without_traceback(tmp_path):
  """Four mistakes of ``python -m avslowfast_jax.main``, run side by side."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  base = [sys.executable, '-m', 'avslowfast_jax.main', '--workdir', str(workdir)]
  quick = f'{REPO}/avslowfast_jax/studies/configs/quickstart.py'
  cases = {
      'variant': (['--config', f'{REPO}/configs/kinetics.py:avslowfast_3x3_r77'],
                  "unknown variant 'avslowfast_3x3_r77'"),
      'override': (['--config', quick, '--config.train.batch_szie=32'],
                   "--config.train.batch_szie: train has no field 'batch_szie'; did you mean "
                   "'batch_size'?"),
      'data': (['--config', quick, f'--config.data.data_dir={tmp_path}/nodata'],
               f'{tmp_path}/nodata does not exist (no shards.json)'),
      'eval': (['--config', quick, '--mode', 'eval'],
               'no latest checkpoint under'),
  }
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  procs = {name: subprocess.Popen(base + argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
           for name, (argv, _) in cases.items()}
  for name, proc in procs.items():
    _, err = proc.communicate(timeout=600)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 2, err[-3000:]
    assert last.startswith('avslowfast_jax.main: error: ') and cases[name][1] in last, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
  assert not os.listdir(workdir)  # nothing ran, nothing was written
