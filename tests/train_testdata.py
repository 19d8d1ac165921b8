"""Helpers of the training tests: tiny real shards (synthetic mp4 files prepared into
TFRecords), the tiny training config as flags and as a ConfigDict, and ``main`` commands."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ('left_right', 'up_down', 'whistle')


def xla_flags(devices: int = 8) -> str:
  """XLA flags of the tests: ``devices`` fake CPU devices, and no LLVM optimisation.

  The tests compile many small programs and run each a few times, so compile time
  dominates; the quickstart and benchmark tests, which time long runs, keep the defaults.
  """
  return (f'--xla_force_host_platform_device_count={devices} '
          '--xla_backend_optimization_level=0')


def make_shards(root: str, videos_per_class: int = 4, videos_per_shard: int = 2) -> str:
  """Writes 3 classes x ``videos_per_class`` mp4s (48x40, 2.4 s) and prepares them.

  Train and validation splits, several shard files each (so two hosts can
  read disjoint files). Returns the shards dir.
  """
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  raw = os.path.join(root, 'raw')
  out = os.path.join(root, 'shards')
  manifest = synthetic.generate(raw, num_videos_per_class=videos_per_class, size=(48, 40),
                                duration_sec=2.4, classes=CLASSES, val_fraction=0.25,
                                progress=False)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  result = subprocess.run(
      [sys.executable, '-m', 'data_pipelines.prepare', '--output_dir', out, '--manifest',
       os.path.basename(manifest), '--num_workers', '1', '--videos_per_shard',
       str(videos_per_shard), '--short_side', '40', '--min_frames', '32'],
      cwd=raw, env=env, capture_output=True, text=True, timeout=600)
  if result.returncode != 0:
    raise RuntimeError(f'prepare failed:\n{result.stderr[-3000:]}')
  return out


# The quickstart config shrunk to test size; shared by CLI runs and in-process references.
# The tests train with the paper's optimizer (SGD with momentum), for which their
# tolerances are set; tests/test_quickstart.py covers the quickstart's own AdamW settings.
TINY = {
    'train.optimizer': 'sgd', 'train.base_lr': 0.1, 'train.warmup_start_lr': 0.01,
    'data.train_crop_size': 32, 'data.train_jitter_scales': (40, 48), 'data.test_short_side': 40,
    'data.test_crop_size': 32, 'data.num_frames': 8, 'model.alpha_f': 4, 'data.sampling_rate': 8,
    'data.audio.num_frames': 32, 'model.bn_group_size': 2, 'model.num_classes': 3,
    # The paper's 80 log-mel bins (the quickstart has 40): the tolerances were set with them.
    'data.audio.num_mels': 80,
    'train.batch_size': 8, 'eval.batch_size': 8, 'data.num_test_clips': 2,
    'data.num_test_crops': 1,
}


def flag_value(v) -> str:
  """A config value as the text of a ``--config.key=`` flag (tuples as ``(a,b)``)."""
  return '(' + ','.join(str(x) for x in v) + ')' if isinstance(v, tuple) else str(v)


def tiny_overrides(data_dir: str, **more) -> list:
  """``--config.*`` flags that shrink the quickstart's AVSlowFast
  (avslowfast_jax/studies/configs/quickstart.py:avslowfast) to test size."""
  values = {'data.data_dir': data_dir, **TINY, **more}
  return [f'--config.{k}={flag_value(v)}' for k, v in values.items()]


def tiny_train_config(data_dir: str, **more):
  """The training config ``main`` builds from :func:`tiny_overrides` (same values): the
  quickstart's AVSlowFast at test size, reading ``data_dir``, with ``more`` set."""
  from avslowfast_jax.studies.configs import quickstart  # pylint: disable=g-import-not-at-top
  c = quickstart.get_config('avslowfast')
  for key, value in {'data.data_dir': data_dir, **TINY, **more}.items():
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


# For the tests that compare topologies (tests/test_distributed_*.py): one BatchNorm
# group over the whole global batch of 8 (TINY has groups of 2) and a learning rate 10x
# below TINY's. With small BN groups (a few values per channel in the 2x2 and 1x1 deep
# layers) or the larger rate, fp32 round-off of the reduction order can flip a ReLU and
# grow past 1e-4; with these the topologies agree to round-off, while a wrong BN group or
# data split still changes the first loss by several percent.
TOPOLOGY = {'model.bn_group_size': 8, 'train.base_lr': 0.01, 'train.warmup_start_lr': 0.001}


def topology_config(**train):
  """The tiny training config with TOPOLOGY, 3 steps, dropout and DropPathway off (one
  static program), and ``train`` fields set; no data dir (batches are passed in)."""
  c = tiny_train_config('', **{'train.total_steps': 3, 'train.warmup_steps': 1,
                               'train.num_train_examples': 8, 'model.dropout_rate': 0.0,
                               'train.drop_pathway_prob': (0.0,), 'avs.hard_start': 0.0,
                               'avs.hard_fraction': 0.5, **TOPOLOGY})
  for k, v in train.items():
    setattr(c.train, k, v)
  return c


# Step settings shared by every test that trains the tiny model: with the same
# values everywhere the compiled programs are the same and come from the
# persistent compilation cache after the first test compiled them.
STEPS = {'train.total_steps': 6, 'train.log_every_steps': 1, 'train.checkpoint_every_steps': 3,
         'train.warmup_steps': 2}


def step_flags(**more) -> list:
  return [f'--config.{k}={flag_value(v)}' for k, v in {**STEPS, **more}.items()]


def session_dirs(tmp_path_factory):
  """``(shards_dir, compilation_cache_dir)`` shared by all tests of the session."""
  base = tmp_path_factory.getbasetemp()
  cache = base / 'jax_compilation_cache'
  cache.mkdir(exist_ok=True)
  root = base / 'train_test_data'
  shards = root / 'shards'
  if not (shards / 'shards.json').exists():
    root.mkdir(exist_ok=True)
    make_shards(str(root))
  return str(shards), str(cache)


def enable_compilation_cache(cache_dir: str) -> None:
  """Persistent XLA cache in this process too (same programs as the ``main`` subprocesses)."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  # jax decides once per process whether the cache is used; earlier compiles
  # in this pytest process (without a cache dir) would have settled it.
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top
  compilation_cache.reset_cache()


def main_command(workdir: str, data_dir: str, *extra, cache_dir: str = '') -> list:
  cmd = [sys.executable, '-m', 'avslowfast_jax.main', '--config',
         os.path.join(REPO, 'avslowfast_jax/studies/configs/quickstart.py') + ':avslowfast', '--workdir', workdir]
  if cache_dir:
    cmd.append(f'--compilation_cache_dir={cache_dir}')
  return cmd + tiny_overrides(data_dir) + list(extra)


def subprocess_env(devices: int = 8) -> dict:
  return dict(os.environ, XLA_FLAGS=xla_flags(devices),
              JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
              PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def read_losses(workdir: str) -> dict:
  """``{step: loss}`` from train_metrics.jsonl (the last entry wins for re-run steps)."""
  import json  # pylint: disable=g-import-not-at-top
  out = {}
  with open(os.path.join(workdir, 'train_metrics.jsonl')) as f:
    for line in f:
      row = json.loads(line)
      out[row['step']] = row['train/loss']
  return out
