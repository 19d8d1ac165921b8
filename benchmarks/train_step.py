r"""Throughput of the trainer's own training step on random inputs.

  python benchmarks/train_step.py --config configs/kinetics.py:avslowfast_8x8_r50 \
      --batch_size 2 --steps 5 [--image_size 224] [--drop_audio] [--config.model.dtype=bfloat16]

  # A/B: several variants of the config, compiled in one process and timed in turn
  python benchmarks/train_step.py --config configs/kinetics.py:avslowfast_8x8_r50 \
      --steps 10 --variant model.conv_impl=cpu --variant model.conv_impl=native

The step is ``avslowfast_jax.train.step`` jitted as the trainer jits it
(forward, backward, the config's optimizer, BN statistics), with the AVS
losses off and DropPathway at 0 unless ``--avs`` / ``--drop_audio`` (audio
dropped on every step), so that it compares with single-loss baselines
(``pytorchvideo_train_step.py``).

Prints one JSON line per variant: ``step_seconds`` (median over ``--steps``
timed steps, after ``--warmup_steps`` untimed ones, the first compiling),
``clips_per_sec``, ``compile_seconds``, CPU seconds and page faults per step,
the device and the model, and the model FLOPs of a step (forward
multiply-adds of the training view x 2 x 3, from ``model_stats``), the
achieved FLOP/s and the MFU against the device's peak
(``avslowfast_jax/tools/accelerators.py``; null where the device has none,
e.g. on CPU). Variants (``--variant field=value[,field=value]``,
fields of ``config``) are all compiled first and then run in turn, one step
each per round, so that every variant sees the same machine state: on a
shared machine the speed drifts by more between minutes than most single
changes make.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from avslowfast_jax import cli, host_memory, parallel, tasks  # noqa: E402
from avslowfast_jax.models import ModelConfig  # noqa: E402
from avslowfast_jax.tools import accelerators  # noqa: E402
from avslowfast_jax.tools.model_stats import model_stats, train_flops_per_clip  # noqa: E402
from data_pipelines.errors import UserError  # noqa: E402

import compiled_step  # noqa: E402  (benchmarks/compiled_step.py)

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:variant].')
_BATCH = flags.DEFINE_integer('batch_size', 2, 'Clips per step (global).')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps (per variant).')
_IMAGE = flags.DEFINE_integer('image_size', 224, 'Training crop size.')
_DROP = flags.DEFINE_boolean('drop_audio', False, 'Drop the audio pathway on every step.')
_AVS = flags.DEFINE_boolean('avs', False, "Include the config's AVS losses.")
_WARMUP = flags.DEFINE_integer('warmup_steps', 2, 'Untimed steps (the first one compiles).')
_VARIANTS = flags.DEFINE_multi_string(
    'variant', [], 'Config overrides of one variant, "field=value[,field=value]" '
    '(e.g. model.conv_impl=native); repeat for an A/B.')
_DRY_RUN = flags.DEFINE_boolean('dry_run', False, 'Check the flags and the config (and each '
                                 'variant), print what would be timed, compile nothing.')
_KEEP = flags.DEFINE_boolean(
    'keep_host_memory', True,
    'CPU: run the step on the calling thread and keep freed heap pages '
    '(avslowfast_jax.host_memory), as avslowfast_jax.main does by default.')


def variant_items(overrides: str) -> list:
  """``'a.b=1,c=(2,3)'`` -> ``['a.b=1', 'c=(2,3)']``: split at the commas that start a field."""
  return [item for item in re.split(r',(?=\s*[A-Za-z_][\w.]*=)', overrides) if item.strip()]


def apply_overrides(config: ml_collections.ConfigDict, overrides: str) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``field=value`` pairs (comma-separated) set."""
  config = ml_collections.ConfigDict(config.to_dict())
  cli.set_fields(config, [item.strip() for item in variant_items(overrides)], flag='--variant')
  return config


def benchmark_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config as the benchmark runs it (its flags applied)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.train.batch_size = _BATCH.value
  config.train.reference_batch_size = _BATCH.value
  config.train.total_steps = 1000
  config.train.drop_pathway_prob = (1.0,) if _DROP.value else (0.0,)
  config.avs.enabled = bool(_AVS.value and config.avs.enabled)
  config.data.train_crop_size = _IMAGE.value
  return config


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]} (flags are written --name=value)')
  if _CONFIG.value is None:
    raise UserError('--config is required, e.g. --config configs/kinetics.py:avslowfast_8x8_r50')
  for name, value in (('batch_size', _BATCH.value), ('steps', _STEPS.value),
                      ('image_size', _IMAGE.value)):
    if value <= 0:
      raise UserError(f'--{name}={value}: expected a positive number')
  base = benchmark_config(_CONFIG.value)
  names = _VARIANTS.value or ['']
  configs = [apply_overrides(base, name) for name in names]  # mistakes before any compile
  for config in configs:  # the model's fields and values, nothing built
    tasks.get_task(config)
    ModelConfig.from_config(config.model)
  if _DRY_RUN.value:
    for name, config in zip(names, configs):
      print(json.dumps({'variant': name, 'arch': config.model.arch, 'dtype': config.model.dtype,
                        'conv_impl': config.model.conv_impl, 'batch_size': _BATCH.value,
                        'steps': _STEPS.value, 'image_size': _IMAGE.value}))
    return
  kept = host_memory.keep_host_memory() if _KEEP.value else False
  mesh = parallel.create_mesh()
  variants = [compiled_step.CompiledStep(config, mesh) for config in configs]
  for variant in variants:
    for _ in range(_WARMUP.value):
      variant.run(timed=False)
  for _ in range(_STEPS.value):
    for variant in variants:
      variant.run(timed=True)
  b = base.train.batch_size
  for name, v in zip(names, variants):
    median = statistics.median(v.times)
    stats = model_stats(v.config)
    step_flops = train_flops_per_clip(v.config) * b
    achieved = step_flops / median
    kind = str(jax.devices()[0].device_kind)
    print(json.dumps({
        'variant': name,
        'clips_per_sec': round(b / median, 3),
        'step_seconds': round(median, 3),
        'step_seconds_all': [round(t, 3) for t in v.times],
        # CPU time of the whole process per step (all threads): on a shared
        # machine it moves far less with other load than the wall-clock time.
        'cpu_seconds_per_step': round(statistics.median(v.cpu_times), 3),
        'load_average_1min': round(os.getloadavg()[0], 2),
        'keep_host_memory': kept,
        # Minor page faults of the process per step (median).
        'page_faults_per_step': int(statistics.median(v.faults)),
        'compile_seconds': round(v.compile_seconds, 1),
        'batch_size': b,
        'image_size': _IMAGE.value,
        'drop_audio': _DROP.value,
        'avs': bool(v.config.avs.enabled),
        'dtype': v.config.model.dtype,
        'conv_impl': v.config.model.conv_impl,
        'arch': v.config.model.arch,
        'params': stats['params'],
        'gflops_per_view_test': stats['gflops'],
        'model_tflops_per_step': round(step_flops / 1e12, 4),
        'achieved_tflops_per_sec': round(achieved / 1e12, 4),
        'achieved_gflops_per_sec': round(achieved / 1e9, 2),
        'mfu': accelerators.utilisation(achieved, kind, v.config.model.dtype, jax.device_count()),
        'device': kind,
        'platform': jax.default_backend(),
        'num_devices': jax.device_count(),
        'loss': v.loss,
    }))


if __name__ == '__main__':
  cli.run_absl(main)
