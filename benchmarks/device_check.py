r"""One check of an accelerator machine: speed against PyTorch, batch sweep, profile, MFU, memory.

  pip install -e . && pip install -e '.[cuda12]'     # or '.[tpu]'
  python benchmarks/device_check.py --output device_check.json
  python benchmarks/device_check.py --plan gpu --output device_check.json   # fits 8 minutes
  python benchmarks/device_check.py --variants avslowfast_4x16_r50 --dtypes bfloat16 \
      --batches 8 32 --skip torch batch_sweep drop_pathway input_pipeline  # a few cases only

  python benchmarks/device_check.py --reduced   # tiny model, a few steps: checks the script

The cases run in this order: ``torch``, ``batch_sweep``, ``train_steps``,
``clip_finish``, ``drop_pathway``, ``input_pipeline``. Every jax case compiles
its own step (20-80 s each for these models on one H200). ``--budget_s`` is
the time the check should end by: a case is skipped (and recorded so) when
the time spent plus 1.1 x the last case of its kind would pass it.
``--output`` rewrites the report after every case, so a run stopped part-way
keeps what it measured. ``input_pipeline`` needs TensorFlow and PyAV, and
``clip_finish`` TensorFlow (its log-mel filterbank's module imports it); the
other cases need jax, flax, optax, ml_collections and absl (``torch``:
PyTorch; pytorchvideo only for its builder), so an accelerator image without
TensorFlow, PyAV, clu or pytorchvideo runs them (docs/accelerators.md lists
the wheels to carry).

``--plan gpu`` is the prepared run for one GPU: PyTorch first, then the
sweep of the paper's model with a profile at each batch, then SlowFast at
batch 8 and 32, clip_finish and DropPathway, within ``--budget_s 400``; jax may take
90% of the GPU's memory (``XLA_PYTHON_CLIENT_MEM_FRACTION``, unless set).

Prints ONE JSON document:

- ``torch``: PyTorch's training step on the same network, batch, resolution
  and optimizer (``benchmarks/torch_train_step.py``, run in a subprocess
  before jax touches the accelerator, so each side has the whole memory):
  bf16 autocast, ``channels_last_3d``, ``cudnn.benchmark``; the network is
  this project's in plain ``torch.nn`` (builder ``minimal``,
  ``torch_slowfast.py``) and, where pytorchvideo is installed, PyTorchVideo's
  builder (``pytorchvideo``). ``rows``: per variant, builder and batch,
  ``step_seconds``, ``clips_per_sec``, ``model_tflops_per_step``,
  ``achieved_tflops_per_sec``, ``mfu``, ``params``, ``peak_bytes_allocated``,
  ``error`` (``out_of_memory`` ends that builder's batches).
- ``batch_sweep``: AVSlowFast 4x16 R50 bf16 (the tiny model, fp32, in reduced
  mode) at per-device batch 8, 16, 32, 64, ... : ``rows`` as ``train_steps``
  rows, each with its ``profile``; the sweep stops at the first batch that runs
  out of memory, or before one whose predicted memory (the last batch's
  ``memory_analysis()`` scaled by the batch) passes the device's limit by 5%
  (``stopped_by``: ``out_of_memory``, ``predicted_out_of_memory``, ``error``,
  ``budget`` or ``end``); ``best``: the batch of the most clips/s.
- ``profile`` (inside each sweep row): ``--profile_steps`` steps traced with
  ``jax.profiler`` and summarised by ``benchmarks/profile_trace.py``: per kind
  (convolution / matmul, batchnorm / reduction, elementwise / fusion,
  transpose / copy, collective, other, idle; kinds from the compiled step's
  HLO) and for the top operations (with their jax ``op_name``: the flax
  module path) and kernels the seconds per step, share of the step and of all
  operation time, calls per step; the step's busy fraction. The check prints
  each table to stderr.
- ``comparison``: for every PyTorch row with a jax row of the same variant,
  batch and dtype: both clips/s, ``jax_over_torch`` and both FLOP counts.
- ``train_steps``: for AVSlowFast and SlowFast 4x16 and 8x8 R50 at 224^2,
  per-device batch 8 and 32, bf16 and fp32 (in that order): step seconds (median), clips/s,
  ``compile_seconds``, model FLOPs per step (``model_stats``: forward multiply-adds of the training
  view x 2 x 3), achieved TFLOP/s, MFU (``avslowfast_jax/tools/accelerators.py``;
  null without a peak for the device), the compiled step's memory
  (``memory_analysis()``) and the device's ``peak_bytes_in_use`` after the
  case (the process's peak so far, where the backend reports it). The step is
  benchmarks/train_step.py's (the trainer's step, AVS losses off, DropPathway
  0). A case that fails (e.g. out of memory at batch 32) records its error
  and the check goes on; a case the sweep measured is copied from it
  (``from_batch_sweep``).
- ``clip_finish``: what ``data.finish_on_device`` adds to the device's work:
  ``avslowfast_jax/clip_finish.py`` (resize, flip, normalisation, log-mels)
  on a Kinetics-shaped batch (windows up to 280 pixels, from frames stored at
  short side 320), per-device batch 8; its milliseconds per batch and the
  bytes a clip crosses to the device with and without it.
- ``drop_pathway``: AVSlowFast 4x16 R50 step time with DropPathway at 0.8 vs
  0 (audio always on), bf16, per-device batch 8; ``saving`` = 1 - ratio.
- ``input_pipeline``: clips/s of the real training iterator with all CPU
  cores, on the built-in synthetic videos prepared at short side 256, with
  the host finishing the clips and with ``data.finish_on_device`` on.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from avslowfast_jax import clip_finish, parallel  # noqa: E402
from avslowfast_jax.tools import accelerators  # noqa: E402
from avslowfast_jax.tools.model_stats import train_flops_per_clip  # noqa: E402
from configs import kinetics  # noqa: E402
from data_pipelines import errors  # noqa: E402
import profile_trace  # noqa: E402  (benchmarks/profile_trace.py)
import torch_train_step  # noqa: E402  (benchmarks/torch_train_step.py; imports torch lazily)
import compiled_step  # noqa: E402  (benchmarks/compiled_step.py)

SWEEP = (8, 16, 32, 64, 128, 256)
FULL = {
    # The paper's model first: on an H200 a case compiles in 20-80 s, so a budget cuts the tail.
    'variants': ('avslowfast_4x16_r50', 'slowfast_4x16_r50', 'avslowfast_8x8_r50',
                 'slowfast_8x8_r50'),
    'batches': (8, 32), 'dtypes': ('bfloat16', 'float32'), 'image_size': 224,
    'warmup': 2, 'steps': 5, 'drop_steps': 20, 'drop_batch': 8,
    'videos_per_class': 4, 'video_size': (340, 256), 'short_side': 256, 'num_clips': 256,
    'pipeline_batch': 32,
    'sweep_variant': 'avslowfast_4x16_r50', 'sweep_dtype': 'bfloat16', 'sweep_batches': SWEEP,
    'profile_steps': 3,
    # PyTorch: the sweep's model at the sweep's batches, SlowFast at 8 and 32.
    'torch_cases': (('avslowfast_4x16_r50', SWEEP), ('slowfast_4x16_r50', (8, 32))),
    'torch_builders': ('minimal', 'pytorchvideo'), 'torch_budget_s': 150.0,
}
# The prepared run for one GPU in one call of at most 8 minutes (docs/accelerators.md): the
# figures that matter most first. Batch 16 is left out of its sweep (each batch compiles for
# over a minute); SlowFast's jax step at batch 8 (and 32 if time is left) for its PyTorch ratio.
GPU = dict(FULL, **{
    'variants': ('slowfast_4x16_r50',), 'batches': (8, 32), 'dtypes': ('bfloat16',),
    'sweep_batches': (8, 32, 64, 128, 256),
    'torch_cases': (('avslowfast_4x16_r50', (8, 32, 64, 128, 256)),
                    ('slowfast_4x16_r50', (8, 32))),
    'torch_budget_s': 120.0,
})
GPU_BUDGET_S = 400.0
GPU_SKIP = ('input_pipeline',)
# Tiny model, tiny data: the same code path in a few minutes on a CPU.
REDUCED = {
    'variants': ('tiny_avslowfast_8x8_r50',), 'batches': (2,), 'dtypes': ('float32',),
    'image_size': 32, 'warmup': 1, 'steps': 2, 'drop_steps': 4, 'drop_batch': 2,
    'videos_per_class': 1, 'video_size': (48, 40), 'short_side': 40, 'num_clips': 8,
    'pipeline_batch': 4,
    'sweep_variant': 'tiny_avslowfast_8x8_r50', 'sweep_dtype': 'float32', 'sweep_batches': (2, 4),
    'profile_steps': 2,
    'torch_cases': (('tiny_avslowfast_8x8_r50', (2, 4)),),
    'torch_builders': ('minimal', 'pytorchvideo'), 'torch_budget_s': 300.0,
}
# The tiny model's data shapes (as in tests/train_testdata.py).
REDUCED_DATA = {'num_frames': 8, 'sampling_rate': 8, 'train_jitter_scales': (40, 48),
                'train_crop_size': 32, 'test_short_side': 40, 'test_crop_size': 32}
CASES = ('torch', 'batch_sweep', 'train_steps', 'clip_finish', 'drop_pathway', 'input_pipeline')


def model_config(variant: str, settings: dict, dtype: str,
                 drop_prob: float = 0.0) -> ml_collections.ConfigDict:
  """The variant's config at the settings' image size, AVS losses off; batch not set."""
  config = kinetics.get_config(variant)
  if variant.startswith('tiny_'):
    for key, value in REDUCED_DATA.items():
      config.data[key] = value
    config.model.alpha_f = 4
    config.data.audio.num_frames = 32
    config.model.bn_group_size = 2
  config.data.train_crop_size = settings['image_size']
  config.train.total_steps = 1000
  config.train.drop_pathway_prob = (drop_prob,)
  config.avs.enabled = False
  config.model.dtype = dtype
  return config


def case_config(variant: str, settings: dict, per_device: int, dtype: str,
                drop_prob: float = 0.0) -> ml_collections.ConfigDict:
  config = model_config(variant, settings, dtype, drop_prob)
  batch = per_device * jax.device_count()
  config.train.batch_size = batch
  config.train.reference_batch_size = batch
  return config


def memory_stats() -> dict:
  try:
    return jax.devices()[0].memory_stats() or {}
  except Exception:  # some backends do not implement it
    return {}


def peak_bytes_in_use():
  return memory_stats().get('peak_bytes_in_use')


def time_steps(variant_step, warmup: int, steps: int) -> list:
  for _ in range(warmup):
    variant_step.run(timed=False)
  for _ in range(steps):
    variant_step.run(timed=True)
  return variant_step.times


OOM_MARKERS = ('RESOURCE_EXHAUSTED', 'out of memory', 'Out of memory', 'OutOfMemory')


def is_oom(text: str) -> bool:
  return any(marker in text for marker in OOM_MARKERS)


def profile_case(step, steps: int, title: str) -> dict:
  """``steps`` steps of a compiled step traced and summarised (profile_trace.py)."""
  try:
    summary = profile_trace.trace_steps(lambda: step.run(timed=False), steps,
                                        hlo_text=step.step.as_text())
    print(profile_trace.format_table(summary, title), file=sys.stderr, flush=True)
    summary['error'] = None
    return summary
  except Exception as e:  # a profile that fails leaves the timing standing
    return {'error': f'{type(e).__name__}: {str(e)[:500]}'}


def train_step_case(variant, settings, per_device, dtype, mesh, profile_steps: int = 0) -> dict:
  row = {'variant': variant, 'per_device_batch': per_device, 'dtype': dtype,
         'image_size': settings['image_size']}
  begin = time.perf_counter()
  try:
    config = case_config(variant, settings, per_device, dtype)
    step = compiled_step.CompiledStep(config, mesh)
    memory = step.step.memory_analysis()
    times = time_steps(step, settings['warmup'], settings['steps'])
    seconds = statistics.median(times)
    flops = train_flops_per_clip(config) * config.train.batch_size
    kind = jax.devices()[0].device_kind
    row.update({
        'step_seconds': seconds,
        'clips_per_sec': config.train.batch_size / seconds,
        'compile_seconds': step.compile_seconds,
        'model_tflops_per_step': flops / 1e12,
        'achieved_tflops_per_sec': flops / seconds / 1e12,
        'mfu': accelerators.utilisation(flops / seconds, kind, dtype, jax.device_count()),
        'memory_analysis_bytes': None if memory is None else {
            name: int(getattr(memory, f'{name}_size_in_bytes'))
            for name in ('argument', 'output', 'temp', 'generated_code', 'alias')},
        # Parameters, optimizer state and BN statistics (per device: replicated).
        'state_bytes': int(sum(x.nbytes for x in jax.tree.leaves(step.state))),
        'peak_bytes_in_use': peak_bytes_in_use(),
        'loss': step.loss,
        'error': None,
    })
    if profile_steps:
      row['profile'] = profile_case(step, profile_steps,
                                    f'{variant} {dtype} per-device batch {per_device}')
  except Exception as e:  # a failed case (e.g. out of memory) is a result, not the end
    row['error'] = f'{type(e).__name__}: {str(e)[:1000]}'
    row['out_of_memory'] = is_oom(row['error'])
    row['traceback_tail'] = traceback.format_exc()[-1500:]
  finally:
    step = None
    gc.collect()
    jax.clear_caches()
  row['case_seconds'] = time.perf_counter() - begin
  return row


def predicted_bytes(row: dict, per_device: int):
  """The step's device memory at ``per_device`` clips, from a row of fewer: the state
  stays, the batch and the temporaries scale with the clips. None without the figures."""
  memory = row.get('memory_analysis_bytes')
  if not memory or not row.get('state_bytes'):
    return None
  scale = per_device / row['per_device_batch']
  state = row['state_bytes']
  return state + scale * (max(0, memory['argument'] - state) + memory['temp'])


class Budget:
  """The time the check should end by, and how long each kind of case last took."""

  def __init__(self, seconds: float):
    self.start = time.time()
    self.seconds = seconds
    self.last = {}

  def elapsed(self) -> float:
    return time.time() - self.start

  def allows(self, kind: str) -> bool:
    """Whether a case of ``kind`` started now would end in time (by the last one's length)."""
    return self.elapsed() + 1.1 * self.last.get(kind, 0.0) <= self.seconds

  def record(self, kind: str, seconds: float) -> None:
    self.last[kind] = seconds

  def skipped(self, kind: str) -> dict:
    return {'error': f'skipped: over --budget_s={self.seconds:g} (at {self.elapsed():.0f} s, '
                     f'the last {kind} case took {self.last.get(kind, 0.0):.0f} s)'}


def batch_sweep(settings, mesh, budget: Budget, save=lambda: None, out=None) -> dict:
  """The sweep's model at growing per-device batches until one does not fit (module doc)."""
  variant, dtype = settings['sweep_variant'], settings['sweep_dtype']
  out = {} if out is None else out
  out.update({'variant': variant, 'dtype': dtype, 'batches': list(settings['sweep_batches']),
              'rows': [], 'stopped_by': 'end', 'best': None})
  limit = memory_stats().get('bytes_limit')
  out['device_bytes_limit'] = limit
  kind = f'jax {variant}'
  for i, per_device in enumerate(settings['sweep_batches']):
    case = {'variant': variant, 'per_device_batch': per_device, 'dtype': dtype}
    previous = out['rows'][-1] if out['rows'] else None
    if out['stopped_by'] not in ('end', 'budget'):
      break
    if not budget.allows(kind):
      out['rows'].append({**case, **budget.skipped(kind)})
      out['stopped_by'] = 'budget'
      continue
    guess = predicted_bytes(previous, per_device) if previous else None
    if guess and limit and guess > 1.05 * limit:
      out['rows'].append({**case, 'predicted_bytes': guess, 'error':
                          f'skipped: predicted {guess / 2**30:.1f} GiB over the device limit '
                          f'{limit / 2**30:.1f} GiB'})
      out['stopped_by'] = 'predicted_out_of_memory'
      break
    row = train_step_case(variant, settings, per_device, dtype, mesh, settings['profile_steps'])
    budget.record(kind, row['case_seconds'])
    out['rows'].append(row)
    if row['error'] is not None:
      out['stopped_by'] = 'out_of_memory' if row.get('out_of_memory') else 'error'
    ok = [r for r in out['rows'] if r.get('error') is None]
    if ok:
      best = max(ok, key=lambda r: r['clips_per_sec'])
      out['best'] = {k: best[k] for k in ('per_device_batch', 'clips_per_sec', 'step_seconds',
                                          'mfu', 'compile_seconds')}
      out['best']['over_first_batch'] = best['clips_per_sec'] / ok[0]['clips_per_sec']
    save()
  return out


def importable(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


def torch_case(settings, budget: Budget, save=lambda: None, out=None) -> dict:
  """PyTorch's step on the same networks and batches, in subprocesses (module doc)."""
  out = {} if out is None else out
  out.update({'builders': list(settings['torch_builders']), 'rows': [], 'error': None})
  if not importable('torch'):
    out['error'] = 'skipped: torch is not installed'
    return out
  has_ptv = importable('pytorchvideo')
  dtype = settings['sweep_dtype']
  start = time.time()
  for variant, batches in settings['torch_cases']:
    spec = torch_train_step.spec_from_config(model_config(variant, settings, dtype))
    for builder in settings['torch_builders']:
      base = {'variant': variant, 'builder': builder, 'dtype': dtype}
      if builder == 'pytorchvideo' and not has_ptv:
        out['rows'].append({**base, 'error': 'skipped: pytorchvideo is not installed'})
        continue
      left = min(settings['torch_budget_s'] - (time.time() - start),
                 budget.seconds - budget.elapsed())
      if left <= 0:
        out['rows'].append({**base, 'error': 'skipped: over the PyTorch budget'})
        continue
      cmd = [sys.executable, os.path.join(HERE, 'torch_train_step.py'), '--spec', json.dumps(spec),
             '--builder', builder, '--dtype', dtype, '--steps', str(settings['steps']),
             '--warmup', str(settings['warmup']), '--budget_s', str(left),
             '--batches', *map(str, batches)]
      # jax on the CPU there: the PyTorch process must leave the accelerator to torch.
      env = dict(os.environ, JAX_PLATFORMS='cpu',
                 PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
      try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                                timeout=left + 300)
        rows = [json.loads(line) for line in result.stdout.splitlines()
                if line.startswith('{')]
        if result.returncode != 0 or not rows:
          rows.append({'error': f'exit {result.returncode}: {result.stderr[-1500:]}'})
      except subprocess.TimeoutExpired as e:
        rows = [{'error': f'timed out after {e.timeout:.0f} s'}]
      out['rows'].extend({**base, **row} for row in rows)
      save()
  return out


def comparison(report: dict) -> list:
  """Every PyTorch row beside the jax row of the same variant, batch and dtype."""
  ours = {}
  for row in report.get('batch_sweep', {}).get('rows', []) + report.get('train_steps', []):
    if row.get('error') is None and row.get('clips_per_sec'):
      ours.setdefault((row['variant'], row['per_device_batch'], row['dtype']), row)
  out = []
  for row in report.get('torch', {}).get('rows', []):
    if row.get('error') is not None or not row.get('clips_per_sec'):
      continue
    mine = ours.get((row['variant'], row['per_device_batch'], row['dtype']))
    if mine is None:
      continue
    out.append({'variant': row['variant'], 'per_device_batch': row['per_device_batch'],
                'dtype': row['dtype'], 'torch_builder': row['builder'],
                'jax_clips_per_sec': mine['clips_per_sec'],
                'torch_clips_per_sec': row['clips_per_sec'],
                'jax_over_torch': mine['clips_per_sec'] / row['clips_per_sec'],
                'jax_model_tflops_per_step': mine['model_tflops_per_step'],
                'torch_model_tflops_per_step': row['model_tflops_per_step'],
                'jax_mfu': mine['mfu'], 'torch_mfu': row['mfu']})
  return out


def drop_pathway_case(settings, mesh) -> dict:
  """Mean step time (both kinds of step mixed as training mixes them) at prob 0.8 vs 0."""
  variant = settings['sweep_variant']
  dtype = 'bfloat16' if 'bfloat16' in settings['dtypes'] else settings['dtypes'][0]
  out = {'variant': variant, 'dtype': dtype, 'per_device_batch': settings['drop_batch'],
         'steps': settings['drop_steps']}
  try:
    means = {}
    for prob in (0.0, 0.8):
      config = case_config(variant, settings, settings['drop_batch'], dtype, drop_prob=prob)
      step = compiled_step.CompiledStep(config, mesh)
      times = time_steps(step, settings['warmup'], settings['drop_steps'])
      means[prob] = statistics.mean(times)
      step = None
      gc.collect()
    out.update({'step_seconds_always_on': means[0.0], 'step_seconds_drop_0.8': means[0.8],
                'saving': 1.0 - means[0.8] / means[0.0], 'error': None})
  except Exception as e:
    out['error'] = f'{type(e).__name__}: {str(e)[:1000]}'
  return out


def largest_window_side(config, stored: int) -> int:
  """``data_pipelines.input_pipeline.largest_window_side`` (the same formula; that module
  needs TensorFlow, which accelerator images often lack): the crop window's side that
  becomes ``train_crop_size`` at the smallest jitter scale, frames stored at ``stored``."""
  crop, low = config.data.train_crop_size, min(config.data.train_jitter_scales)
  return int(min(stored, -(-crop * stored // low)))


def clip_finish_case(settings, mesh) -> dict:
  """Device time of ``clip_finish.finish_clips`` on a batch of the sweep model's shapes."""
  variant = settings['sweep_variant']
  out = {'variant': variant, 'per_device_batch': settings['drop_batch']}
  try:
    config = case_config(variant, settings, settings['drop_batch'], 'float32')
    d = config.data
    stored = max(d.train_jitter_scales)  # prepared at the jitter's top scale (320 for Kinetics)
    side = largest_window_side(config, stored)
    batch = config.train.batch_size
    samples = int(round(d.num_frames * d.sampling_rate / d.fps * d.audio.sample_rate))
    rng = np.random.default_rng(0)
    sizes = rng.integers(d.train_crop_size, side + 1, batch)
    raw = {'frames': rng.integers(0, 256, (batch, d.num_frames * side * side * 3), np.uint8),
           'window': np.stack([sizes, rng.integers(0, 2, batch)], 1).astype(np.int32),
           'audio_pcm': rng.integers(-3000, 3000, (batch, 2, samples), np.int16)}
    raw = parallel.host_to_global(raw, mesh)
    finish = jax.jit(functools.partial(clip_finish.finish_clips, config))
    times = []
    for i in range(settings['warmup'] + settings['steps'] * 2):
      begin = time.perf_counter()
      jax.block_until_ready(finish(raw))
      if i >= settings['warmup']:
        times.append(time.perf_counter() - begin)
    seconds = statistics.median(times)
    finished = jax.eval_shape(finish, raw)
    out.update({
        'window_side': side, 'ms_per_batch': 1e3 * seconds, 'ms_per_clip': 1e3 * seconds / batch,
        'mb_per_clip_shipped': sum(v.nbytes for v in raw.values()) / batch / 1e6,
        'mb_per_clip_host_finished': sum(finished[k].size * 4 for k in
                                         ('slow', 'fast', 'audio', 'audio_shifted')) / batch / 1e6,
        'error': None})
  except Exception as e:
    out['error'] = f'{type(e).__name__}: {str(e)[:1000]}'
  return out


def input_pipeline_case(settings, workdir) -> dict:
  """Clips/s of the training iterator on the synthetic videos prepared at the short side."""
  out = {'short_side': settings['short_side'], 'cores': len(os.sched_getaffinity(0))}
  try:
    # tf.data and PyAV: only this case needs them (an accelerator image without them
    # still gets the train-step figures).
    from data_pipelines import synthetic  # pylint: disable=import-outside-toplevel
    import input_pipeline as input_bench  # pylint: disable=import-outside-toplevel
    raw = os.path.join(workdir, 'raw')
    prepared = os.path.join(workdir, 'prepared')
    manifest = synthetic.generate(raw, num_videos_per_class=settings['videos_per_class'],
                                  size=settings['video_size'], duration_sec=2.4,
                                  val_fraction=0.0, progress=False)
    result = subprocess.run(
        [sys.executable, '-m', 'data_pipelines.prepare', '--output_dir', prepared,
         '--manifest', os.path.basename(manifest), '--num_workers', str(out['cores']),
         '--short_side', str(settings['short_side']), '--min_frames', '32'],
        cwd=raw, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')))
    if result.returncode != 0:
      raise RuntimeError(f'prepare failed: {result.stderr[-1500:]}')
    variant = settings['sweep_variant']
    config = case_config(variant, settings, 1, 'float32')
    config.data.data_dir = prepared
    if not variant.startswith('tiny_'):
      config.data.train_jitter_scales = (settings['short_side'], settings['short_side'])
    rate, per_cpu_second = input_bench.pipeline_rate(config, prepared, settings['num_clips'],
                                                     settings['pipeline_batch'])
    on_device, on_device_cpu = input_bench.pipeline_rate(
        config, prepared, settings['num_clips'], settings['pipeline_batch'], on_device=True)
    out.update({'clips_per_sec': rate, 'clips_per_cpu_second': per_cpu_second,
                'finish_on_device_clips_per_sec': on_device,
                'finish_on_device_clips_per_cpu_second': on_device_cpu,
                'num_clips': settings['num_clips'], 'crop': config.data.train_crop_size,
                'frames': config.data.num_frames, 'error': None})
  except Exception as e:
    out['error'] = f'{type(e).__name__}: {str(e)[:1000]}'
  return out


def summary_text(report: dict) -> str:
  """The figures that matter, as a few text lines (printed last, to stderr)."""
  lines = [f"device check: {report.get('device_kind')} x{report.get('num_devices')}, "
           f"jax {report.get('jax_version')}, {report.get('total_seconds', 0):.0f} s"]
  for row in report.get('torch', {}).get('rows', []):
    lines.append(f"  torch {row.get('builder')} {row.get('variant')} "
                 f"b{row.get('per_device_batch', '-')}: "
                 + (f"{row['clips_per_sec']:.1f} clips/s" if row.get('error') is None
                    else str(row['error'])[:100]))
  sweep = report.get('batch_sweep', {})
  for row in sweep.get('rows', []):
    lines.append(f"  jax {row['variant']} {row['dtype']} b{row['per_device_batch']}: "
                 + (f"{row['clips_per_sec']:.1f} clips/s, mfu {row['mfu']}, compile "
                    f"{row['compile_seconds']:.0f} s" if row.get('error') is None
                    else str(row['error'])[:100]))
  if sweep:
    lines.append(f"  sweep stopped by: {sweep.get('stopped_by')}; best: {sweep.get('best')}")
  for row in report.get('train_steps', []):
    lines.append(f"  jax {row['variant']} {row['dtype']} b{row['per_device_batch']}: "
                 + (f"{row['clips_per_sec']:.1f} clips/s" if row.get('error') is None
                    else str(row['error'])[:100]))
  for row in report.get('comparison', []):
    lines.append(f"  {row['variant']} b{row['per_device_batch']}: jax/torch({row['torch_builder']})"
                 f" = {row['jax_over_torch']:.2f}")
  return '\n'.join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--reduced', action='store_true', help='tiny model, few steps, tiny data')
  parser.add_argument('--plan', default='full', choices=('full', 'gpu'),
                      help="'gpu': the prepared run for one GPU in 8 minutes (module doc); "
                      'with --reduced, its skips and budget on the tiny settings')
  parser.add_argument('--budget_s', type=float, default=None,
                      help='the check should end by then: a case that would not (by the last '
                      'case of its kind) is recorded as skipped (default 420; 400 for '
                      '--plan gpu)')
  parser.add_argument('--variants', nargs='+', default=None,
                      help='train-step cases of these configs/kinetics.py variants only')
  parser.add_argument('--dtypes', nargs='+', default=None, choices=('float32', 'bfloat16'))
  parser.add_argument('--batches', nargs='+', type=int, default=None,
                      help='per-device batch sizes of the train-step cases')
  parser.add_argument('--sweep_batches', nargs='+', type=int, default=None,
                      help='per-device batch sizes of the sweep (growing)')
  parser.add_argument('--profile_steps', type=int, default=None,
                      help='steps traced at each sweep batch (0: no profile)')
  parser.add_argument('--skip', nargs='+', default=None, choices=CASES)
  parser.add_argument('--output', default='',
                      help='also write the report here after every case, so a run stopped '
                      'part-way still leaves the cases it finished')
  args = parser.parse_args(argv)
  if args.reduced:
    settings = dict(REDUCED)
  else:
    settings = dict(GPU if args.plan == 'gpu' else FULL)
  for key in ('variants', 'dtypes', 'batches', 'sweep_batches'):
    if getattr(args, key):
      settings[key] = tuple(getattr(args, key))
  for variant in args.variants or ():
    kinetics.get_config(variant)  # an unknown variant: now, not after the PyTorch case
  for key in ('batches', 'sweep_batches'):
    if any(b <= 0 for b in getattr(args, key) or ()):
      raise errors.UserError(f'--{key} {" ".join(map(str, getattr(args, key)))}: expected '
                             'positive batch sizes')
  if args.profile_steps is not None:
    settings['profile_steps'] = args.profile_steps
  skip = tuple(args.skip) if args.skip is not None else (GPU_SKIP if args.plan == 'gpu' else ())
  budget_s = args.budget_s if args.budget_s is not None else (
      GPU_BUDGET_S if args.plan == 'gpu' else 420.0)
  if args.plan == 'gpu':
    # Before jax's backend starts: the sweep's larger batches need most of the GPU.
    os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.9')
  budget = Budget(budget_s)
  report = {
      'reduced': args.reduced, 'plan': args.plan, 'budget_s': budget_s, 'skip': list(skip),
      'settings': {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
  }

  def save():
    if args.output:
      with open(args.output, 'w') as f:
        json.dump(report, f, indent=1)

  # PyTorch first, in its own processes, before jax starts its backend and takes the memory.
  if 'torch' not in skip:
    report['torch'] = {}
    torch_case(settings, budget, save, report['torch'])
    save()
  mesh = parallel.create_mesh()
  report.update({
      'backend': jax.default_backend(),
      'device_kind': jax.devices()[0].device_kind,
      'num_devices': jax.device_count(),
      'jax_version': jax.__version__,
  })
  if 'batch_sweep' not in skip:
    report['batch_sweep'] = {}
    batch_sweep(settings, mesh, budget, save, report['batch_sweep'])
    report['comparison'] = comparison(report)
    save()
  report['train_steps'] = []
  if 'train_steps' not in skip:
    # Batch 8 of every model and dtype first: batch 32 (the likelier to fail) last.
    for b in settings['batches']:
      for v in settings['variants']:
        for d in settings['dtypes']:
          kind = f'jax {v}'
          measured = [r for r in report.get('batch_sweep', {}).get('rows', [])
                      if (r['variant'], r['per_device_batch'], r['dtype']) == (v, b, d)
                      and r.get('error') is None]
          if measured:  # the sweep's row of the same case: no second compile
            row = {k: val for k, val in measured[0].items() if k != 'profile'}
            report['train_steps'].append({**row, 'from_batch_sweep': True})
            continue
          if not budget.allows(kind):
            report['train_steps'].append({'variant': v, 'per_device_batch': b, 'dtype': d,
                                          **budget.skipped(kind)})
            continue
          row = train_step_case(v, settings, b, d, mesh)
          budget.record(kind, row['case_seconds'])
          report['train_steps'].append(row)
          report['comparison'] = comparison(report)
          save()
  if 'clip_finish' not in skip:
    report['clip_finish'] = clip_finish_case(settings, mesh)
    save()
  if 'drop_pathway' not in skip:
    kind = 'drop_pathway'
    # Two compiles of the sweep's model: twice its last case, before any ran.
    budget.last.setdefault(kind, 2 * budget.last.get(f"jax {settings['sweep_variant']}", 0.0))
    if budget.allows(kind):
      begin = time.time()
      report['drop_pathway'] = drop_pathway_case(settings, mesh)
      budget.record(kind, time.time() - begin)
    else:
      report['drop_pathway'] = budget.skipped(kind)
    save()
  if 'input_pipeline' not in skip:
    with tempfile.TemporaryDirectory() as workdir:
      report['input_pipeline'] = input_pipeline_case(settings, workdir)
  report['comparison'] = comparison(report)
  report['total_seconds'] = budget.elapsed()
  save()
  print(json.dumps(report, indent=1))
  print(summary_text(report), file=sys.stderr, flush=True)
  return report


if __name__ == '__main__':
  errors.run(main)
