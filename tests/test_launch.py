"""The launch/ scripts: usage, argument checks, --dry_run and what they really run.

Real runs use fake `python3`, `srun`, `scontrol` and `gcloud` programs that
record their argv and environment, so nothing is trained and no cloud or
cluster is touched.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch'
SCRIPTS = ['local.sh', 'multi_gpu.sh', 'tpu_pod.sh', 'slurm.sbatch']
CONFIG = 'configs/kinetics.py:tiny_avslowfast_4x16_r50'
# Overrides that need exact quoting on the way through.
OVERRIDES = ['--config.train.batch_size=8', '--config.data.data_dir=/data/my shards',
             "--config.x=it's", '--config.y=$HOME "q"']
# Variables of the caller that the scripts read; tests start without them.
SCRIPT_VARS = ('TF_CPP_MIN_LOG_LEVEL', 'XLA_PYTHON_CLIENT_MEM_FRACTION', 'CUDA_VISIBLE_DEVICES',
               'DRY_RUN', 'PROCS_PER', 'GPUS_PER_NODE', 'COORDINATOR_PORT', 'PYTHON',
               'JAX_LOCAL_DEVICE_IDS')

FAKE_PYTHON = """\
import json, os, sys, time
args = sys.argv[1:]
pid = args[args.index('--process_id') + 1] if '--process_id' in args else 'single'
env = {k: v for k, v in os.environ.items()
       if k in ('CUDA_VISIBLE_DEVICES', 'JAX_LOCAL_DEVICE_IDS', 'TF_CPP_MIN_LOG_LEVEL',
                'XLA_PYTHON_CLIENT_MEM_FRACTION')}
with open(os.path.join(os.environ['FAKE_OUT'], f'python_{pid}.json'), 'w') as f:
  json.dump({'argv': args, 'env': env}, f)
if pid == os.environ.get('FAKE_FAIL_ID'):
  sys.exit(3)
time.sleep(float(os.environ.get('FAKE_SLEEP', '0')))
"""

# A miniature srun: starts --ntasks copies of the command, --ntasks-per-node
# per node, with the SLURM_* variables a real srun gives each task.
FAKE_SRUN = """\
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.path.join(os.environ['FAKE_OUT'], 'srun.json'), 'w') as f:
  json.dump(args, f)
opts = {}
while args[0].startswith('--'):
  key, _, value = args.pop(0)[2:].partition('=')
  opts[key] = value
n, per_node = int(opts['ntasks']), int(opts['ntasks-per-node'])
procs = [subprocess.Popen(args, env=dict(os.environ, SLURM_PROCID=str(i),
                                         SLURM_LOCALID=str(i % per_node),
                                         SLURM_NODEID=str(i // per_node)))
         for i in range(n)]
sys.exit(max(p.wait() for p in procs))
"""

FAKE_SCONTROL = """\
import sys
assert sys.argv[1:3] == ['show', 'hostnames'], sys.argv
print('\\n'.join(f'gpu-a{i:03d}' for i in range(1, int(sys.argv[3].split('-')[-1][:3]) + 1)))
"""

FAKE_GCLOUD = """\
import json, os, sys
out = os.environ['FAKE_OUT']
n = len([f for f in os.listdir(out) if f.startswith('gcloud_')])
with open(os.path.join(out, f'gcloud_{n}.json'), 'w') as f:
  json.dump(sys.argv[1:], f)
"""


@pytest.fixture
def fakes(tmp_path):
  """A bin/ folder of fake programs (first on PATH) and the folder they report to."""
  bin_dir, out = tmp_path / 'bin', tmp_path / 'out'
  bin_dir.mkdir()
  out.mkdir()
  for name, body in [('python3', FAKE_PYTHON), ('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL),
                     ('gcloud', FAKE_GCLOUD)]:
    path = bin_dir / name
    path.write_text(f'#!{sys.executable}\n{body}')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
  return bin_dir, out


def clean_env():
  return {k: v for k, v in os.environ.items()
          if k not in SCRIPT_VARS and not k.startswith('SLURM_')}


def run(script, *args, env=None, fakes=None, timeout=20):
  base = clean_env()
  if fakes is not None:
    base['PATH'] = f'{fakes[0]}{os.pathsep}{base["PATH"]}'
    base['FAKE_OUT'] = str(fakes[1])
    base['TMPDIR'] = str(fakes[1].parent)
  base.update(env or {})
  return subprocess.run(['bash', str(LAUNCH / script), *args], cwd=ROOT, env=base,
                        capture_output=True, text=True, timeout=timeout)


def records(out, prefix):
  return {p.stem[len(prefix):]: json.loads(p.read_text()) for p in out.glob(f'{prefix}*.json')}


def slurm_env(nodes=4, gpus=8, **extra):
  env = {'SLURM_JOB_NODELIST': f'gpu-a[001-{nodes:03d}]', 'SLURM_JOB_ID': '777',
         'SLURM_GPUS_ON_NODE': str(gpus), 'SLURM_CPUS_ON_NODE': '96'}
  env.update(extra)
  return env


def main_args(workdir='/tmp/run'):
  return ['--config', CONFIG, '--workdir', workdir, *OVERRIDES]


def expected_main(workdir='/tmp/run', python='python3'):
  return [python, '-m', 'avslowfast_jax.main', '--config', CONFIG, '--workdir', workdir, *OVERRIDES]


# ---------------------------------------------------------------- all scripts


@pytest.mark.parametrize('script', SCRIPTS)
def test_bash_syntax(script):
  result = subprocess.run(['bash', '-n', str(LAUNCH / script)], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr


def test_shellcheck():
  if shutil.which('shellcheck') is None:
    pytest.skip('shellcheck not installed')
  result = subprocess.run(['shellcheck', '--shell=bash', '-x', *SCRIPTS, '_lib.sh'], cwd=LAUNCH,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize('script', SCRIPTS)
def test_help(script):
  result = run(script, '--help')
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('Usage:')
  for word in ('--config', '--workdir', '--dry_run', 'avslowfast_jax.main'):
    assert word in result.stdout


REQUIRED = {
    'local.sh': [],
    'multi_gpu.sh': [],
    'tpu_pod.sh': ['--tpu', 'pod', '--zone', 'us-central2-b'],
    'slurm.sbatch': [],
}


@pytest.mark.parametrize('script', SCRIPTS)
@pytest.mark.parametrize('missing', ['--config', '--workdir'])
def test_missing_required_argument(script, missing):
  given = {'--config': CONFIG, '--workdir': 'gs://bucket/run'}
  del given[missing]
  args = [*REQUIRED[script], '--dry_run', *[x for kv in given.items() for x in kv]]
  result = run(script, *args, env=slurm_env())
  assert result.returncode != 0
  assert f'error: {missing} is required' in result.stderr
  assert result.stdout == ''


@pytest.mark.parametrize('script', ['local.sh', 'multi_gpu.sh', 'slurm.sbatch'])
def test_bad_config_file_and_mode(script, fakes):
  result = run(script, '--dry_run', '--config', 'configs/nope.py:x', '--workdir', '/tmp/w',
               env=slurm_env(), fakes=fakes)
  assert result.returncode != 0
  assert "config file 'configs/nope.py' not found" in result.stderr
  result = run(script, '--dry_run', '--config', CONFIG, '--workdir', '/tmp/w', '--mode', 'fit',
               env=slurm_env(), fakes=fakes)
  assert result.returncode != 0
  assert '--mode must be train, eval or export' in result.stderr


# ------------------------------------------------------------------- local.sh


def test_local_dry_run():
  result = run('local.sh', '--dry_run', '--gpus', '0,3', *main_args(), '--mode', 'eval')
  assert result.returncode == 0, result.stderr
  assert shlex.split(result.stdout) == [
      'env', 'TF_CPP_MIN_LOG_LEVEL=2', 'XLA_PYTHON_CLIENT_MEM_FRACTION=0.90',
      'CUDA_VISIBLE_DEVICES=0,3', *expected_main()[:7], '--mode', 'eval', *OVERRIDES]
  assert len(result.stdout.splitlines()) == 1


def test_local_dry_run_keeps_callers_env_and_passes_after_double_dash():
  result = run('local.sh', '--dry_run', '--config=' + CONFIG, '--workdir=/w', '--', '--gpus', '1',
               env={'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.5', 'PYTHON': '/opt/py'})
  assert shlex.split(result.stdout) == [
      'env', 'TF_CPP_MIN_LOG_LEVEL=2', 'XLA_PYTHON_CLIENT_MEM_FRACTION=0.5', '/opt/py', '-m',
      'avslowfast_jax.main', '--config', CONFIG, '--workdir', '/w', '--gpus', '1']


def test_local_runs_what_dry_run_prints(fakes):
  printed = shlex.split(run('local.sh', '--dry_run', '--gpus', '2', *main_args()).stdout)
  result = run('local.sh', '--gpus', '2', *main_args(), fakes=fakes)
  assert result.returncode == 0, result.stderr
  rec = records(fakes[1], 'python_')['single']
  assert rec['argv'] == printed[printed.index('python3') + 1:]
  assert rec['env'] == {'TF_CPP_MIN_LOG_LEVEL': '2', 'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.90',
                        'CUDA_VISIBLE_DEVICES': '2'}


@pytest.mark.parametrize('gpus', ['0,,1', 'a', ''])
def test_local_bad_gpus(gpus):
  result = run('local.sh', '--dry_run', f'--gpus={gpus}', *main_args())
  assert result.returncode != 0
  assert '--gpus must be a comma-separated list' in result.stderr


# --------------------------------------------------------------- multi_gpu.sh


def test_multi_gpu_single_process_dry_run():
  result = run('multi_gpu.sh', '--dry_run', '--gpus', '0,1,2,3', *main_args())
  assert result.returncode == 0, result.stderr
  assert shlex.split(result.stdout) == [
      'env', 'TF_CPP_MIN_LOG_LEVEL=2', 'XLA_PYTHON_CLIENT_MEM_FRACTION=0.90',
      'CUDA_VISIBLE_DEVICES=0,1,2,3', *expected_main()]


def test_multi_gpu_per_gpu_dry_run():
  result = run('multi_gpu.sh', '--dry_run', '--per_gpu', '--gpus', '4,5,6', '--port', '2345',
               *main_args())
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert len(lines) == 4 and lines[-1] == 'wait'
  for i, line in enumerate(lines[:3]):
    argv = shlex.split(line)
    assert argv[-1] == '&'
    assert argv[:-1] == [
        'env', 'TF_CPP_MIN_LOG_LEVEL=2', 'XLA_PYTHON_CLIENT_MEM_FRACTION=0.90',
        'CUDA_VISIBLE_DEVICES=4,5,6', f'JAX_LOCAL_DEVICE_IDS={i}', *expected_main(),
        '--coordinator_address', 'localhost:2345', '--num_processes', '3', '--process_id', str(i)]


def test_multi_gpu_per_gpu_runs_every_process(fakes):
  result = run('multi_gpu.sh', '--per_gpu', '--num_gpus', '4', *main_args(), fakes=fakes)
  assert result.returncode == 0, result.stderr
  recs = records(fakes[1], 'python_')
  assert sorted(recs) == ['0', '1', '2', '3']
  for pid, rec in recs.items():
    assert rec['env']['JAX_LOCAL_DEVICE_IDS'] == pid
    assert 'CUDA_VISIBLE_DEVICES' not in rec['env']
    assert rec['argv'][:len(expected_main()) - 1] == expected_main()[1:]
    assert rec['argv'][-4:] == ['--num_processes', '4', '--process_id', pid]


def test_multi_gpu_one_failure_stops_the_others(fakes):
  start = time.monotonic()
  result = run('multi_gpu.sh', '--per_gpu', '--num_gpus', '3', *main_args(), fakes=fakes,
               env={'FAKE_FAIL_ID': '1', 'FAKE_SLEEP': '60'})
  assert result.returncode == 3
  assert 'a process failed (exit 3)' in result.stderr
  assert time.monotonic() - start < 15


def test_multi_gpu_argument_errors(fakes):
  result = run('multi_gpu.sh', '--dry_run', '--per_gpu', '--num_gpus', '2', *main_args(),
               '--process_id=1')
  assert result.returncode != 0
  assert '--process_id is set by this launcher' in result.stderr
  result = run('multi_gpu.sh', '--dry_run', '--gpus', '0', '--num_gpus', '2', *main_args())
  assert result.returncode != 0 and 'not both' in result.stderr
  result = run('multi_gpu.sh', '--dry_run', '--per_gpu', '--num_gpus', '0', *main_args())
  assert result.returncode != 0 and '--num_gpus must be a positive integer' in result.stderr


# ----------------------------------------------------------------- tpu_pod.sh

TPU = ['--tpu', 'my-v4-32', '--zone', 'us-central2-b', '--project', 'proj']


def remote_command(argv):
  (command,) = [a for a in argv if a.startswith('--command=')]
  return shlex.split(command[len('--command='):])


def test_tpu_pod_dry_run():
  result = run('tpu_pod.sh', '--dry_run', *TPU, *main_args('gs://bucket/k400'))
  assert result.returncode == 0, result.stderr
  (line,) = result.stdout.splitlines()
  argv = shlex.split(line)
  assert argv[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'my-v4-32']
  assert {'--zone=us-central2-b', '--project=proj', '--worker=all'} <= set(argv)
  assert remote_command(argv) == ['cd', 'avslowfast-jax', '&&', 'env', 'TF_CPP_MIN_LOG_LEVEL=2',
                                  *expected_main('gs://bucket/k400')]


def test_tpu_pod_setup_dry_run():
  result = run('tpu_pod.sh', '--dry_run', '--setup', '--repo_dir', 'src/avsf', *TPU,
               *main_args('gs://bucket/k400'))
  assert result.returncode == 0, result.stderr
  tar, scp, install, train = result.stdout.splitlines()
  assert 'ls-files' in tar and '| tar' in tar
  scp = shlex.split(scp)
  assert scp[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp'] and '--worker=all' in scp
  install = remote_command(shlex.split(install))
  assert install[:3] == ['mkdir', '-p', 'src/avsf'] and 'jax[tpu]' in install
  assert remote_command(shlex.split(train))[:2] == ['cd', 'src/avsf']


def test_tpu_pod_runs_what_dry_run_prints(fakes):
  args = ['--setup', *TPU, *main_args('gs://bucket/k400')]
  printed = run('tpu_pod.sh', '--dry_run', *args, fakes=fakes).stdout.splitlines()
  result = run('tpu_pod.sh', *args, fakes=fakes)
  assert result.returncode == 0, result.stderr
  calls = records(fakes[1], 'gcloud_')
  assert [calls[str(i)] for i in range(3)] == [shlex.split(line)[1:] for line in printed[1:]]
  with tarfile.open(fakes[1].parent / 'avslowfast-jax-src.tgz') as tar:
    names = set(tar.getnames())
  assert {'launch/tpu_pod.sh', 'configs/kinetics.py', 'pyproject.toml'} <= names
  assert not any(n.startswith('.git/') for n in names)


@pytest.mark.parametrize('args,message', [
    (['--zone', 'z'], '--tpu NAME is required'),
    (['--tpu', 't'], '--zone ZONE is required'),
    (['--tpu', 't', '--zone', 'z', '--repo_dir', '/abs'], '--repo_dir must be a folder relative'),
])
def test_tpu_pod_argument_errors(args, message):
  result = run('tpu_pod.sh', '--dry_run', *args, *main_args('gs://b/w'))
  assert result.returncode != 0
  assert message in result.stderr


def test_tpu_pod_needs_bucket_workdir_and_no_process_flags():
  result = run('tpu_pod.sh', '--dry_run', *TPU, *main_args('/tmp/run'))
  assert result.returncode != 0
  assert '--workdir must be a gs:// bucket' in result.stderr
  result = run('tpu_pod.sh', '--dry_run', *TPU, *main_args('gs://b/w'), '--process_id', '0')
  assert result.returncode != 0
  assert '--process_id is set by this launcher' in result.stderr


# --------------------------------------------------------------- slurm.sbatch


def srun_options(argv):
  assert argv[0] == 'srun'
  return {a.split('=')[0]: a.split('=')[1] for a in argv[1:argv.index('env')]}


def test_slurm_dry_run_one_process_per_gpu(fakes):
  result = run('slurm.sbatch', *main_args('/shared/run'), env=slurm_env(DRY_RUN='1'), fakes=fakes)
  assert result.returncode == 0, result.stderr
  argv = shlex.split(result.stdout)
  assert srun_options(argv) == {'--nodes': '4', '--ntasks': '32', '--ntasks-per-node': '8',
                                '--kill-on-bad-exit': '1', '--cpus-per-task': '12'}
  env_end = argv.index('bash')
  assert argv[argv.index('env') + 1:env_end] == ['TF_CPP_MIN_LOG_LEVEL=2',
                                                 'XLA_PYTHON_CLIENT_MEM_FRACTION=0.90']
  script = argv[env_end + 2]
  assert 'JAX_LOCAL_DEVICE_IDS="$SLURM_LOCALID"' in script
  assert '--process_id "$SLURM_PROCID"' in script
  port = 61440 + 777 % 4096
  assert argv[env_end + 4:] == [*expected_main('/shared/run'), '--coordinator_address',
                                f'gpu-a001:{port}', '--num_processes', '32']


def test_slurm_dry_run_one_process_per_node(fakes):
  env = slurm_env(nodes=2, SLURM_GPUS_ON_NODE='', SLURM_GPUS_PER_NODE='h100:8',
                  PROCS_PER='node', COORDINATOR_PORT='4567')
  result = run('slurm.sbatch', '--dry_run', *main_args('/shared/run'), env=env, fakes=fakes)
  assert result.returncode == 0, result.stderr
  argv = shlex.split(result.stdout)
  opts = srun_options(argv)
  assert (opts['--nodes'], opts['--ntasks'], opts['--ntasks-per-node']) == ('2', '2', '1')
  assert opts['--cpus-per-task'] == '96'
  assert 'JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7' in argv
  assert argv[-4:] == ['--coordinator_address', 'gpu-a001:4567', '--num_processes', '2']


@pytest.mark.parametrize('procs_per,expected_ids', [
    ('gpu', {'0': '0', '1': '1', '2': '0', '3': '1'}),
    ('node', {'0': '0,1', '1': '0,1'}),
])
def test_slurm_runs_every_process(fakes, procs_per, expected_ids):
  env = slurm_env(nodes=2, gpus=2, PROCS_PER=procs_per)
  result = run('slurm.sbatch', *main_args('/shared/run'), env=env, fakes=fakes)
  assert result.returncode == 0, result.stderr
  recs = records(fakes[1], 'python_')
  assert {pid: rec['env']['JAX_LOCAL_DEVICE_IDS'] for pid, rec in recs.items()} == expected_ids
  n = str(len(expected_ids))
  for pid, rec in recs.items():
    assert rec['argv'][:len(expected_main()) - 1] == expected_main('/shared/run')[1:]
    assert rec['argv'][-6:] == ['--coordinator_address', f'gpu-a001:{61440 + 777}',
                                '--num_processes', n, '--process_id', pid]


@pytest.mark.parametrize('env,message', [
    ({}, 'not inside a SLURM job'),
    (slurm_env(PROCS_PER='socket'), 'PROCS_PER must be gpu or node'),
    (slurm_env(SLURM_GPUS_ON_NODE=''), 'cannot tell the GPUs per node'),
])
def test_slurm_environment_errors(fakes, env, message):
  result = run('slurm.sbatch', '--dry_run', *main_args('/shared/run'), env=env, fakes=fakes)
  assert result.returncode != 0
  assert message in result.stderr


def test_slurm_finds_helpers_from_the_submit_folder(fakes, tmp_path):
  # sbatch runs a copy of the script from its spool folder.
  spool = tmp_path / 'spool'
  spool.mkdir()
  shutil.copy(LAUNCH / 'slurm.sbatch', spool / 'slurm_script')
  env = clean_env()
  env.update(slurm_env(DRY_RUN='1', SLURM_SUBMIT_DIR=str(ROOT)), PATH=f'{fakes[0]}:{env["PATH"]}')
  result = subprocess.run(['bash', str(spool / 'slurm_script'), *main_args()], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=20)
  assert result.returncode == 0, result.stderr
  assert shlex.split(result.stdout)[0] == 'srun'
