r"""One check of an accelerator machine: training speed, MFU, memory, input pipeline, DropPathway.

  pip install -e . && pip install -e '.[cuda12]'     # or '.[tpu]'
  python benchmarks/device_check.py --output device_check.json
  python benchmarks/device_check.py --variants avslowfast_4x16_r50 --dtypes bfloat16 \
      --batches 8 32 --skip drop_pathway input_pipeline     # a few cases only

  python benchmarks/device_check.py --reduced   # tiny model, a few steps: checks the script

Every case compiles its own step (20-80 s each for these models on one
H200), so the whole matrix takes longer than the default ``--budget_s``:
cases not started within it are recorded as skipped. ``--output`` rewrites
the report after every case, so a run stopped part-way keeps what it
measured. The train-step cases need neither TensorFlow nor PyAV (only the
input-pipeline case does), so an accelerator image without them still
measures the step.

Prints ONE JSON document:

- ``train_steps``: for AVSlowFast and SlowFast 4x16 and 8x8 R50 at 224^2,
  per-device batch 8 and 32, bf16 and fp32 (in that order): step seconds (median), clips/s,
  model FLOPs per step (``model_stats``: forward multiply-adds of the training
  view x 2 x 3), achieved TFLOP/s, MFU (``avslowfast_jax/tools/accelerators.py``;
  null without a peak for the device), the compiled step's memory
  (``memory_analysis()``) and the device's ``peak_bytes_in_use`` after the
  case (the process's peak so far, where the backend reports it). The step is
  benchmarks/train_step.py's (the trainer's step, AVS losses off, DropPathway
  0). A case that fails (e.g. out of memory at batch 32) records its error
  and the check goes on; cases not started within ``--budget_s`` are
  recorded as skipped.
- ``input_pipeline``: clips/s of the real training iterator with all CPU
  cores, on the built-in synthetic videos prepared at short side 256, with
  the host finishing the clips and with ``data.finish_on_device`` on.
- ``clip_finish``: what ``data.finish_on_device`` adds to the device's work:
  ``avslowfast_jax/clip_finish.py`` (resize, flip, normalisation, log-mels)
  on a Kinetics-shaped batch (windows up to 280 pixels, from frames stored at
  short side 320), per-device batch 8; its milliseconds per batch and the
  bytes a clip crosses to the device with and without it.
- ``drop_pathway``: AVSlowFast 4x16 R50 step time with DropPathway at 0.8 vs
  0 (audio always on), bf16, per-device batch 8; ``saving`` = 1 - ratio.
"""

from __future__ import annotations

import argparse
import functools
import gc
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
import train_step as step_bench  # noqa: E402  (benchmarks/train_step.py)

FULL = {
    # The paper's model first: on an H200 a case compiles in 20-80 s, so a budget cuts the tail.
    'variants': ('avslowfast_4x16_r50', 'slowfast_4x16_r50', 'avslowfast_8x8_r50',
                 'slowfast_8x8_r50'),
    'batches': (8, 32), 'dtypes': ('bfloat16', 'float32'), 'image_size': 224,
    'warmup': 2, 'steps': 5, 'drop_steps': 20, 'drop_batch': 8,
    'videos_per_class': 4, 'video_size': (340, 256), 'short_side': 256, 'num_clips': 256,
    'pipeline_batch': 32,
}
# Tiny model, tiny data: the same code path in well under a minute on a CPU.
REDUCED = {
    'variants': ('tiny_avslowfast_8x8_r50',), 'batches': (2,), 'dtypes': ('float32',),
    'image_size': 32, 'warmup': 1, 'steps': 2, 'drop_steps': 4, 'drop_batch': 2,
    'videos_per_class': 1, 'video_size': (48, 40), 'short_side': 40, 'num_clips': 8,
    'pipeline_batch': 4,
}
# The tiny model's data shapes (as in tests/train_testdata.py).
REDUCED_DATA = {'num_frames': 8, 'sampling_rate': 8, 'train_jitter_scales': (40, 48),
                'train_crop_size': 32, 'test_short_side': 40, 'test_crop_size': 32}


def case_config(variant: str, settings: dict, per_device: int, dtype: str,
                drop_prob: float = 0.0) -> ml_collections.ConfigDict:
  config = kinetics.get_config(variant)
  if variant.startswith('tiny_'):
    for key, value in REDUCED_DATA.items():
      config.data[key] = value
    config.model.alpha_f = 4
    config.data.audio.num_frames = 32
    config.model.bn_group_size = 2
  config.data.train_crop_size = settings['image_size']
  batch = per_device * jax.device_count()
  config.train.batch_size = batch
  config.train.reference_batch_size = batch
  config.train.total_steps = 1000
  config.train.drop_pathway_prob = (drop_prob,)
  config.avs.enabled = False
  config.model.dtype = dtype
  return config


def peak_bytes_in_use():
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # some backends do not implement it
    return None
  return None if not stats else stats.get('peak_bytes_in_use')


def time_steps(variant_step, warmup: int, steps: int) -> list:
  for _ in range(warmup):
    variant_step.run(timed=False)
  for _ in range(steps):
    variant_step.run(timed=True)
  return variant_step.times


def train_step_case(variant, settings, per_device, dtype, mesh) -> dict:
  row = {'variant': variant, 'per_device_batch': per_device, 'dtype': dtype,
         'image_size': settings['image_size']}
  try:
    config = case_config(variant, settings, per_device, dtype)
    step = step_bench.CompiledStep(config, mesh)
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
        'peak_bytes_in_use': peak_bytes_in_use(),
        'loss': step.loss,
        'error': None,
    })
  except Exception as e:  # a failed case (e.g. out of memory) is a result, not the end
    row['error'] = f'{type(e).__name__}: {str(e)[:1000]}'
    row['traceback_tail'] = traceback.format_exc()[-1500:]
  finally:
    step = None
    gc.collect()
    jax.clear_caches()
  return row


def drop_pathway_case(settings, mesh) -> dict:
  """Mean step time (both kinds of step mixed as training mixes them) at prob 0.8 vs 0."""
  variant = settings['variants'][-1] if 'tiny' in settings['variants'][0] \
      else 'avslowfast_4x16_r50'
  dtype = 'bfloat16' if 'bfloat16' in settings['dtypes'] else settings['dtypes'][0]
  out = {'variant': variant, 'dtype': dtype, 'per_device_batch': settings['drop_batch'],
         'steps': settings['drop_steps']}
  try:
    means = {}
    for prob in (0.0, 0.8):
      config = case_config(variant, settings, settings['drop_batch'], dtype, drop_prob=prob)
      step = step_bench.CompiledStep(config, mesh)
      times = time_steps(step, settings['warmup'], settings['drop_steps'])
      means[prob] = statistics.mean(times)
      step = None
      gc.collect()
    out.update({'step_seconds_always_on': means[0.0], 'step_seconds_drop_0.8': means[0.8],
                'saving': 1.0 - means[0.8] / means[0.0], 'error': None})
  except Exception as e:
    out['error'] = f'{type(e).__name__}: {str(e)[:1000]}'
  return out


def clip_finish_case(settings, mesh) -> dict:
  """Device time of ``clip_finish.finish_clips`` on a batch of the first variant's shapes."""
  variant = settings['variants'][0]
  out = {'variant': variant, 'per_device_batch': settings['drop_batch']}
  try:
    from data_pipelines import input_pipeline as pipeline  # pylint: disable=import-outside-toplevel
    config = case_config(variant, settings, settings['drop_batch'], 'float32')
    d = config.data
    stored = max(d.train_jitter_scales)  # prepared at the jitter's top scale (320 for Kinetics)
    side = pipeline.largest_window_side(config, stored)
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
    variant = settings['variants'][0]
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


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--reduced', action='store_true', help='tiny model, few steps, tiny data')
  parser.add_argument('--budget_s', type=float, default=420.0,
                      help='train-step and DropPathway cases not started within this many '
                      'seconds are recorded as skipped, so the check ends in time')
  parser.add_argument('--variants', nargs='+', default=None,
                      help='train-step cases of these configs/kinetics.py variants only')
  parser.add_argument('--dtypes', nargs='+', default=None, choices=('float32', 'bfloat16'))
  parser.add_argument('--batches', nargs='+', type=int, default=None,
                      help='per-device batch sizes')
  parser.add_argument('--skip', nargs='+', default=(),
                      choices=('train_steps', 'drop_pathway', 'clip_finish', 'input_pipeline'))
  parser.add_argument('--output', default='',
                      help='also write the report here after every case, so a run stopped '
                      'part-way still leaves the cases it finished')
  args = parser.parse_args(argv)
  settings = dict(REDUCED if args.reduced else FULL)
  for key in ('variants', 'dtypes', 'batches'):
    if getattr(args, key):
      settings[key] = tuple(getattr(args, key))
  start = time.time()
  mesh = parallel.create_mesh()
  report = {
      'reduced': args.reduced,
      'backend': jax.default_backend(),
      'device_kind': jax.devices()[0].device_kind,
      'num_devices': jax.device_count(),
      'jax_version': jax.__version__,
      'settings': {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
  }

  def save():
    if args.output:
      with open(args.output, 'w') as f:
        json.dump(report, f, indent=1)

  over_budget = {'error': f'skipped: over --budget_s={args.budget_s}'}
  # Batch 8 of every model and dtype first: batch 32 (the likelier to fail) last.
  report['train_steps'] = []
  if 'train_steps' not in args.skip:
    for b in settings['batches']:
      for v in settings['variants']:
        for d in settings['dtypes']:
          case = {'variant': v, 'per_device_batch': b, 'dtype': d}
          if time.time() - start > args.budget_s:
            report['train_steps'].append({**case, **over_budget})
            continue
          report['train_steps'].append(train_step_case(v, settings, b, d, mesh))
          save()
  if 'drop_pathway' not in args.skip:
    report['drop_pathway'] = (over_budget if time.time() - start > args.budget_s
                              else drop_pathway_case(settings, mesh))
    save()
  if 'clip_finish' not in args.skip:
    report['clip_finish'] = clip_finish_case(settings, mesh)
    save()
  if 'input_pipeline' not in args.skip:
    with tempfile.TemporaryDirectory() as workdir:
      report['input_pipeline'] = input_pipeline_case(settings, workdir)
  report['total_seconds'] = time.time() - start
  save()
  print(json.dumps(report, indent=1))
  return report


if __name__ == '__main__':
  main()
