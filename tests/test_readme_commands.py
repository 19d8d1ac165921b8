"""Every command in the README's code blocks, run as printed.

``tests/test_readme.py`` checks that the modules, flags and fields the commands
name exist; this runs them. What is changed, and only because it must be:

- ``/data/...``, ``/ckpt/...`` and ``/tmp/...`` become folders under the
  test's temporary folder, and bare file names (``my_videos.csv``,
  ``train.csv``, ``clips.npz``, ...) files there. Before the commands run, the
  test writes there what the README assumes a user has: tiny synthetic videos
  (``my_videos.csv`` lists them; ``/data/k400`` holds them under Kinetics'
  file names, which ``train.csv`` and ``validate.csv`` list). Everything else,
  every ``/data/...`` folder a command makes included, comes from the commands.
- ``...`` is filled in: a line that starts with it (an ablation override)
  adds its flags to the first full command of its code block; a command that
  ends in it takes the rest of that first command's arguments (a launch
  script's: none); a flag whose value is ``...`` (or ``gs://...``) takes the
  value the previous command of the same program gave.
- ``gs://my-bucket`` stays: the first access to it is answered "no network"
  (``fs._probe`` replaced), so the bucket command must end there, in one
  UserError naming the path.

How far each runs, on 2 CPU cores in about a minute in all:

- to completion, on the tiny data: ``data_pipelines.prepare`` (a manifest;
  Kinetics files), ``inspect_clips`` (on what prepare wrote), ``model_stats``
  (its GFLOPs and parameters are the README table's), the launch scripts'
  ``--dry_run`` and the studies' planning (``ablate --dry_run``;
  ``ssl_evidence`` up to its first run, replaced);
- ``avslowfast_jax.main`` (full-size models on days of data): in this
  process, through argument parsing with main's own flags, config loading and
  overrides, then the checks main makes before it builds a model
  (``avslowfast_jax.preflight``): data, splits, classes, the checkpoint to
  start from, the output folders. Each ends where the README's preconditions
  are not met here (no checkpoint trained into ``/ckpt``), with the expected
  UserError naming the path, and nothing written; or passes the checks. One
  runs as a subprocess too, to see the whole console;
- the tools that need what training makes (``predict``, ``ensemble``,
  ``transfer``, ``import_weights`` without the PySlowFast file): to their
  UserError about the missing run, export or checkpoint;
- ``benchmarks/train_step.py`` with ``--dry_run`` (flags, config, variants).

Commands not run, each with the reason: :data:`NOT_RUN`.
"""

import contextlib
import copy
import csv
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from absl import flags
from ml_collections import config_flags
import pytest
import tensorflow as tf

import train_testdata as td
from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax import cli, predict, preflight
from avslowfast_jax.studies import ablate, ssl_evidence
from avslowfast_jax.tools import ensemble, import_weights, inspect_clips, transfer
from data_pipelines import errors, fs, prepare
from data_pipelines.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NOT_RUN = {
    'bash quickstart.sh': 'installs the package with pip, then trains for 12 minutes; '
                          'tests/test_quickstart.py runs the quickstart',
    'bash .ci/run': 'installs the test extras and runs this whole suite',
    "pip install -e '.[test]'": 'installs packages',
    'python -m pytest -q -n 2 -m "not slow" tests': 'this suite itself',
    'python -m pytest -q -n 2 tests': 'this suite itself',
    "pip install -e '.[import]'": 'installs packages',
    'pip install -e .': 'installs packages',
    "pip install -e '.[cuda12]'": 'installs packages',
    'sbatch --nodes=4 --gpus-per-node=8 launch/slurm.sbatch --config ... --workdir ...':
        'needs a SLURM cluster; tests/test_launch.py runs the script under fake srun/scontrol',
    'python benchmarks/device_check.py --output device_check.json':
        'measures an accelerator for minutes; tests/test_benchmarks.py runs its --reduced plan',
    'python benchmarks/pytorchvideo_train_step.py':
        'times PyTorchVideo training steps of the 8x8 R50 (minutes; the import-test extra)',
    'python benchmarks/input_pipeline.py --config configs/kinetics.py:avslowfast_4x16_r50':
        'makes videos and times the input pipeline (minutes)',
    'python benchmarks/prepare.py': 'makes videos and times their preparation (a minute)',
}

# Bare file names the commands read or write: files of the test's work folder.
_FILE = re.compile(r'^[\w.+-]+\.(csv|mp4|npz|png|json|pyth)$')


def readme_blocks():
  """``[(block index, command)]`` of the README's indented code blocks, as test_readme.py
  reads them (comments dropped, continuation lines joined)."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    lines = f.read().splitlines()
  out, current, block, in_block = [], '', 0, False
  for line in lines:
    if not line.startswith('    '):
      if current:
        out.append((block, current))
      current = ''
      if in_block:
        block += 1
      in_block = False
      continue
    in_block = True
    text = line.strip()
    if not text or text.startswith('#'):
      continue
    text = text.split('  #')[0].strip()
    current = f'{current} {text}' if current else text
    if current.endswith('\\'):
      current = current[:-1].rstrip()
    else:
      out.append((block, current))
      current = ''
  if current:
    out.append((block, current))
  return out


def program(tokens):
  """``avslowfast_jax.main``, ``benchmarks/train_step.py``, ``launch/local.sh``, ..."""
  if tokens[0] == 'python':
    return tokens[2] if tokens[1] == '-m' else tokens[1]
  return tokens[0]


def expand(commands):
  """``[(README command, argv)]`` with every ``...`` filled in (module docstring)."""
  first_in_block, last_value, out = {}, {}, []
  for block, command in commands:
    if command in NOT_RUN:
      continue
    tokens = shlex.split(command)
    if tokens[0] == '...':  # an override of the block's first full command
      tokens = list(first_in_block[block]) + tokens[1:]
    prog = program(tokens)
    value_of_flag = tokens[-2].startswith('--') and '=' not in tokens[-2]
    if tokens[-1] == '...' and not value_of_flag:  # "and the rest of the arguments"
      tokens = tokens[:-1]
      base = first_in_block.get(block)
      if base is not None and program(base) == prog and not prog.startswith('launch/'):
        given = {t.split('=')[0] for t in tokens if t.startswith('--')}
        rest, skip = [], False
        for i, t in enumerate(base[3:], 3):
          if skip:
            skip = False
            continue
          name = t.split('=')[0]
          if name in given:
            skip = '=' not in t and i + 1 < len(base) and not base[i + 1].startswith('--')
            continue
          rest.append(t)
        tokens += rest
    for i, t in enumerate(tokens):
      if t in ('...', 'gs://...') and i and tokens[i - 1].startswith('--'):
        flag = tokens[i - 1]
        value = last_value.get((prog.split('/')[0], flag), '/ckpt/x')
        tokens[i] = f'gs://my-bucket{value}' if t == 'gs://...' else value
    for i, t in enumerate(tokens[:-1]):
      if t.startswith('--') and '=' not in t and not tokens[i + 1].startswith('--'):
        last_value[(prog.split('/')[0], t)] = tokens[i + 1]
    if '...' not in command:
      first_in_block.setdefault(block, tokens)
    out.append((command, tokens))
  return out


COMMANDS = readme_blocks()
RUNS = expand(COMMANDS)


def localise(tokens, root, work):
  """The README's paths moved under the test's folders (module docstring)."""
  out = []
  for t in tokens:
    t = re.sub('(^|=)(/data/|/ckpt/|/tmp/)', lambda m: m.group(1) + root + m.group(2), t)
    if _FILE.match(t):
      t = os.path.join(work, t)
    out.append(t)
  return out


# ----------------------------------------------------------------- the README's data
@pytest.fixture(scope='module')
def places(tmp_path_factory):
  """``(root, work)``: where /data and /ckpt go, and the work folder, with what the README
  assumes a user has: videos, a manifest of them, Kinetics files and CSVs."""
  from data_pipelines import synthetic  # pylint: disable=import-outside-toplevel
  base = tmp_path_factory.mktemp('readme')
  root, work = str(base / 'root'), str(base / 'work')
  os.makedirs(work)
  manifest = synthetic.generate(os.path.join(work, 'videos'), num_videos_per_class=2,
                                size=(48, 40), duration_sec=2.4, classes=td.CLASSES,
                                val_fraction=0.5, progress=False)
  with open(manifest) as f:
    rows = list(csv.DictReader(f))
  videos = os.path.dirname(manifest)
  with open(os.path.join(work, 'my_videos.csv'), 'w') as f:
    f.write('path,label\n')
    for row in rows:
      f.write(f'{os.path.join(videos, row["path"])},{row["label"]}\n')
  k400 = os.path.join(root, 'data', 'k400')
  os.makedirs(k400)
  files = {'train': open(os.path.join(work, 'train.csv'), 'w'),
           'validate': open(os.path.join(work, 'validate.csv'), 'w')}
  for f in files.values():
    f.write('label,youtube_id,time_start,time_end,split\n')
  for i, row in enumerate(rows):
    split = 'train' if row.get('split', 'train') == 'train' else 'validate'
    youtube_id = f'yt{i:08d}'
    shutil.copy(os.path.join(videos, row['path']),
                os.path.join(k400, f'{youtube_id}_000000_000002.mp4'))
    files[split].write(f'{row["label"]},{youtube_id},0,2,{split}\n')
  for f in files.values():
    f.close()
  return root, work


# ------------------------------------------------------------------- the runners
def main_flags(argv):
  """A fresh set of ``avslowfast_jax.main``'s own flags (copies), for one parse."""
  from avslowfast_jax import main as main_lib  # pylint: disable=import-outside-toplevel
  values = flags.FlagValues()
  for flag in flags.FLAGS.get_key_flags_for_module(main_lib.__name__):
    if flag.name != 'config':
      values[flag.name] = copy.deepcopy(flag)
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  flags.mark_flags_as_required(['config', 'workdir'], flag_values=values)
  return values


def parse_main(argv):
  """``avslowfast_jax.main``'s flags parsed from ``argv``, config and overrides loaded."""
  values = main_flags(argv)
  rest = cli.parse_flags(argv, values)
  assert rest == argv[:1], f'arguments main refuses: {rest[1:]}'
  return values


def check_main(values):
  """What ``avslowfast_jax.main`` checks before it builds the model (raises a UserError)."""
  config, workdir, mode = values.config, values.workdir, values.mode
  if mode == 'train':
    preflight.check_training(config, workdir)
  elif mode == 'eval':
    preflight.check_evaluation(config, workdir)
  else:
    preflight.check_model(config)
    ckpt_lib.resolve_checkpoint(ckpt_lib.checkpoint_root(config, workdir),
                                config.eval.checkpoint)


def expected_of_main(values):
  """What a README main command must end in here (module docstring): a regex, or None."""
  config, workdir = values.config, values.workdir
  data = config.data.data_dir
  if values.mode != 'export' and not os.path.exists(os.path.join(data, 'shards.json')):
    return re.escape(f'{data} does not exist (no shards.json)')
  init = config.train.init_from
  if values.mode == 'train' and init and not os.path.exists(init):
    return re.escape(f'config.train.init_from={init}: no such file or folder')
  if values.mode in ('eval', 'export'):
    return re.escape(f'no latest checkpoint under {workdir}/checkpoints')
  return None


def no_network(path):
  raise tf.errors.FailedPreconditionError(
      None, None, "Error executing an HTTP request: libcurl code 6 meaning 'Could not resolve "
      "hostname', error details: Could not resolve host: www.googleapis.com")


class _Reached(Exception):
  """ssl_evidence got to its first run (replaced by this)."""


# What each in-process command (by program) must end in: a regex of its UserError, or None
# for completing; the check of what it wrote follows.
EXPECTED = {
    'avslowfast_jax.studies.ablate': None,
    'avslowfast_jax.studies.ssl_evidence': 'reached',
    'avslowfast_jax.tools.inspect_clips': None,
    'avslowfast_jax.predict': r': no such export directory$',
    'avslowfast_jax.tools.ensemble': r'k400_sf_4x16/per_video_scores.npz: missing; evaluate it '
                                     r'first',
    'avslowfast_jax.tools.transfer': r'--pretrained=\S+/ckpt/ssl_8x8: no such file or folder',
    'avslowfast_jax.tools.import_weights': r"SLOWFAST_8x8_R50.pyth' does not exist|needs torch",
}
PROGRAMS = {
    'data_pipelines.prepare': prepare.main,
    'avslowfast_jax.studies.ablate': ablate.main,
    'avslowfast_jax.studies.ssl_evidence': ssl_evidence.main,
    'avslowfast_jax.tools.inspect_clips': inspect_clips.main,
    'avslowfast_jax.predict': predict.main,
    'avslowfast_jax.tools.ensemble': ensemble.main,
    'avslowfast_jax.tools.transfer': transfer.main,
}
# Run as subprocesses (their flags are absl's, defined by the script: one set per process).
SUBPROCESS = ('avslowfast_jax.tools.model_stats', 'benchmarks/train_step.py', 'launch/')


def _in_process(prog, argv):
  """``(UserError message or None, output)`` of an argparse command run in this process."""
  if prog == 'avslowfast_jax.studies.ablate':
    argv = argv + ['--dry_run']
  if prog == 'avslowfast_jax.tools.import_weights':
    main, argv = import_weights.main, ['import_weights', *argv]
  else:
    main = PROGRAMS[prog]
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out):
      main(argv)
  except UserError as e:
    return str(e), out.getvalue()
  except _Reached:
    return 'reached', out.getvalue()
  return None, out.getvalue()


def test_every_command_is_run_or_listed():
  run = {command for command, _ in RUNS}
  for _, command in COMMANDS:
    assert command in run or command in NOT_RUN, command
  assert not set(NOT_RUN) - {c for _, c in COMMANDS}, 'NOT_RUN lists what the README lacks'
  for command, tokens in RUNS:
    prog = program(tokens)
    assert (prog in PROGRAMS or prog in EXPECTED or prog == 'avslowfast_jax.main'
            or prog.startswith(SUBPROCESS)), f'no way to run {command}'


def test_readme_commands_in_process(places, monkeypatch):
  """The README's order matters: prepare writes the shards inspect_clips and main read."""
  root, work = places
  monkeypatch.chdir(ROOT)
  monkeypatch.setattr(fs, '_probe', no_network)
  monkeypatch.setattr(fs, '_reached', set())
  # The tools' own set-up of this process for long runs (compilation cache, CPU memory).
  monkeypatch.setattr(transfer, 'set_up_process', lambda workdir: None)

  def reached(*args, **kwargs):
    raise _Reached()

  monkeypatch.setattr(ssl_evidence, 'run_evidence', reached)
  failures, timings = [], {}
  for command, tokens in RUNS:
    prog = program(tokens)
    if prog.startswith(SUBPROCESS):
      continue
    argv = localise(tokens[3:] if tokens[0] == 'python' else tokens[1:], root, work)
    started = time.time()
    try:
      if prog == 'avslowfast_jax.main':
        try:
          values = parse_main(['main', *argv])
        except UserError as e:
          failures.append(f'{command}\n  does not parse: {e}')
          continue
        expected, got = expected_of_main(values), None
        try:
          check_main(values)
        except UserError as e:
          got = str(e)
        if (got is None) != (expected is None) or (got and not re.search(expected, got)):
          failures.append(f'{command}\n  ended in {got!r}, expected {expected!r}')
        if values.mode == 'train' and os.path.exists(values.workdir):
          failures.append(f'{command}\n  wrote into {values.workdir} before it built a model')
        continue
      if prog == 'data_pipelines.prepare':
        got, out = _in_process(prog, argv)
        output = argv[argv.index('--output_dir') + 1]
        if output.startswith('gs://'):
          expected = re.escape('gs://my-bucket/k400/train.csv: cannot reach gs://my-bucket: no '
                               'network')
          if not got or not re.search(expected, got):
            failures.append(f'{command}\n  ended in {got!r}, expected {expected!r}')
        elif got is not None or not os.path.exists(os.path.join(output, 'shards.json')):
          failures.append(f'{command}\n  ended in {got!r}; prepared nothing into {output}')
        continue
      got, out = _in_process(prog, argv)
      expected = EXPECTED[prog]
      if expected is None:
        if got is not None:
          failures.append(f'{command}\n  ended in {got!r}')
      elif got is None or not re.search(expected, got):
        failures.append(f'{command}\n  ended in {got!r}, expected {expected!r}')
      if prog == 'avslowfast_jax.tools.inspect_clips' and got is None:
        for name in ('clips.npz', 'sheet.png'):
          assert os.path.getsize(os.path.join(work, name)) > 1000, name
      if prog == 'avslowfast_jax.studies.ablate':
        assert re.search(r'\d+ runs of 400 steps into .*/tmp/ablate; nothing was run', out), out
    finally:
      timings[command] = round(time.time() - started, 1)
  assert not failures, '\n'.join(failures) + f'\n(seconds: {timings})'


def test_readme_commands_as_subprocesses(places):
  """model_stats to completion (the README's GFLOPs table), train_step's --dry_run, the
  launch scripts' --dry_run, and one main command for the whole console path; side by
  side."""
  root, work = places
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)  # the console as a user sees it
  procs = {}
  for command, tokens in RUNS:
    prog = program(tokens)
    if not prog.startswith(SUBPROCESS):
      continue
    argv = localise(tokens, root, work)
    if prog.startswith('launch/') or prog == 'benchmarks/train_step.py':
      argv.append('--dry_run')
    argv = ([sys.executable] + argv[1:]) if argv[0] == 'python' else ['bash'] + argv
    procs[command] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
  main_command, main_tokens = next((c, t) for c, t in RUNS if program(t) == 'avslowfast_jax.main')
  main_argv = localise(main_tokens, root, work)
  main_data = next(a.split('=', 1)[1] for a in main_argv if a.startswith('--config.data.data'))
  missing = main_data + '_not_prepared'  # the README's first command, before prepare ran
  main_argv = [sys.executable] + [a.replace(main_data, missing) for a in main_argv[1:]]
  procs['main'] = subprocess.Popen(main_argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
  results = {}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=600)
    results[name] = (proc.returncode, out, err)
  failures = [f'{name}\n  exit {code}: {err[-2000:]}' for name, (code, out, err) in results.items()
              if code != (2 if name == 'main' else 0)]
  assert not failures, '\n'.join(failures)
  stats = next(out for name, (_, out, _) in results.items() if 'model_stats' in name)
  line = [l for l in stats.splitlines() if l.startswith('{')][-1]
  assert '"gflops": 39.146' in line and '"params": 42617624' in line, line  # README: 39.15, 42.62M
  _, _, err = results['main']
  lines = err.strip().splitlines()
  # The console: the run's one start line, then the message; no banner, no traceback.
  assert len(lines) <= 2 and lines[-1] == (
      f'avslowfast_jax.main: error: {missing} does not exist (no shards.json): prepare videos '
      'into it with python -m data_pipelines.prepare --output_dir DIR ..., or make the '
      'built-in dataset with python -m data_pipelines.synthetic'), err
  assert not os.path.exists(next(a for a in main_argv if '/ckpt/' in a))  # its workdir
  for name, (_, out, _) in results.items():
    if name.startswith('launch/'):
      assert 'avslowfast_jax.main --config configs/kinetics.py:avslowfast_4x16_r50' in out, out
