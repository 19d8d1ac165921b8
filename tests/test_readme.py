"""The README's commands are real: every module, script, config, variant, flag
and config override it names exists. (The quickstart itself runs in
test_quickstart.py; the launch scripts' dry runs in test_launch.py.)
"""

import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

from avslowfast_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
  """Shell commands of the README's indented code blocks, continuations joined."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    lines = f.read().splitlines()
  commands, current = [], ''
  for line in lines:
    if not line.startswith('    '):
      if current:
        commands.append(current)
      current = ''
      continue
    text = line.strip()
    if not text or text.startswith('#'):
      continue
    text = text.split('  #')[0].strip()
    current = f'{current} {text}' if current else text
    if current.endswith('\\'):
      current = current[:-1].rstrip()
    else:
      commands.append(current)
      current = ''
  if current:
    commands.append(current)
  return commands


COMMANDS = readme_commands()


def test_readme_has_the_two_setup_commands():
  assert 'bash quickstart.sh' in COMMANDS
  assert 'bash .ci/run' in COMMANDS
  with open(os.path.join(ROOT, '.ci', 'run')) as f:
    ci = f.read()
  # CI runs the same test command the README points to.
  assert 'pytest' in ci and os.path.exists(os.path.join(ROOT, 'quickstart.sh'))


def _tokens(command):
  return shlex.split(command.replace('...', ''))


@functools.lru_cache(maxsize=None)
def _help_text(module):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')
  text = ''
  for flag in ('--helpfull', '--help'):  # absl modules list every flag with --helpfull
    out = subprocess.run([sys.executable, '-m', module, flag], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    text = out.stdout + out.stderr
    if 'Unknown command line flag' not in text and 'unrecognized arguments' not in text:
      break
  return text


def _config_field_exists(config, dotted):
  node = config
  for part in dotted.split('.'):
    if part not in node:
      return False
    node = node[part]
  return True


def _load_config(spec):
  return cli.load_config_file(os.path.join(ROOT, spec))


PY_COMMANDS = [c for c in COMMANDS if c.startswith('python')]


def test_readme_names_python_commands():
  assert len(PY_COMMANDS) >= 15, PY_COMMANDS


@pytest.mark.parametrize('command', PY_COMMANDS)
def test_python_command_is_real(command):
  tokens = _tokens(command)
  if tokens[1] == '-m':
    module = tokens[2]
    assert importlib.util.find_spec(module) is not None, f'no module {module}'
    args = tokens[3:]
    help_text = _help_text(module)
  else:
    script = tokens[1]
    assert os.path.exists(os.path.join(ROOT, script)), f'no script {script}'
    args = tokens[2:]
    help_text = subprocess.run([sys.executable, script, '--help'], cwd=ROOT, capture_output=True,
                               text=True, timeout=180).stdout
  config = None
  for i, arg in enumerate(args):
    if arg == '--config' and i + 1 < len(args) and args[i + 1].startswith('configs/'):
      config = _load_config(args[i + 1])  # raises for a stale file or variant
  for arg in args:
    if not arg.startswith('--'):
      continue
    name = arg.split('=')[0]
    if name.startswith('--config.'):
      assert config is not None
      assert _config_field_exists(config, name[len('--config.'):]), f'{name}: no such field'
    else:
      assert re.search(re.escape(name) + r'\b', help_text), f'{module if tokens[1] == "-m" else script}: no flag {name}'


def test_ablation_overrides_exist():
  config = _load_config('configs/kinetics.py:avslowfast_4x16_r50')
  overrides = [c for c in COMMANDS if c.startswith('...')]
  assert overrides
  for command in overrides:
    for arg in _tokens(command):
      name = arg.split('=')[0]
      assert _config_field_exists(config, name[len('--config.'):]), name


def test_launch_scripts_named_in_readme_exist():
  names = set(re.findall(r'launch/[\w.]+', ' '.join(COMMANDS)))
  assert {'launch/local.sh', 'launch/multi_gpu.sh', 'launch/slurm.sbatch',
          'launch/tpu_pod.sh'} <= names
  for name in names:
    assert os.path.exists(os.path.join(ROOT, name)), name
