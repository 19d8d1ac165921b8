r"""PyTorch's training step on the same network, batch and optimizer as ``train_step.py``.

  python benchmarks/torch_train_step.py --variant avslowfast_4x16_r50 --batches 8 16 32 \
      [--builder minimal|pytorchvideo] [--dtype bfloat16] [--image_size 224]

The baseline that the device check (``device_check.py``, case ``torch``) sets
beside the jax step: one step = forward under ``torch.autocast(bfloat16)``
(``--dtype float32``: no autocast), cross-entropy, backward, SGD with Nesterov
momentum and weight decay on the kernels only (the trainer's optimizer), on
random inputs; the model and inputs in ``channels_last_3d``, and
``torch.backends.cudnn.benchmark = True``. The network is PyTorchVideo's
builder (``--builder pytorchvideo``: ``create_audio_visual_slowfast`` /
``create_slowfast``) or this project's network in plain ``torch.nn``
(``--builder minimal``, ``torch_slowfast.py``; the default, as accelerator
images seldom have pytorchvideo).

Batches run in the order given, each a fresh model; the first that runs out
of memory is recorded and ends the sweep, and batches not started within
``--budget_s`` are recorded as skipped. Prints one JSON line per batch:
``step_seconds`` (median of ``--steps`` after ``--warmup`` untimed steps),
``clips_per_sec``, the forward's FLOPs per clip counted by
``torch.utils.flop_counter`` on meta tensors x 3 (forward and backward) x
batch as ``model_tflops_per_step``, the achieved TFLOP/s and MFU
(``avslowfast_jax/tools/accelerators.py``), ``params``, and on CUDA the peak
memory allocated. ``--spec`` (JSON of :func:`spec_from_config`)
replaces ``--variant``/``--image_size``; the device check passes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from data_pipelines import errors  # noqa: E402

OOM_MARKERS = ('out of memory', 'RESOURCE_EXHAUSTED', 'Out of memory')


def spec_from_config(config) -> dict:
  """The shapes and settings the PyTorch side needs, from an experiment config (plain data)."""
  model = config.model.to_dict() if hasattr(config.model, 'to_dict') else dict(config.model)
  model = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.items()}
  d, t = config.data, config.train
  return {
      'model': model,
      'slow_frames': d.num_frames // config.model.alpha_f, 'fast_frames': d.num_frames,
      'audio_frames': d.audio.num_frames, 'mels': d.audio.num_mels,
      'image_size': d.train_crop_size,
      'base_lr': t.base_lr, 'momentum': t.momentum, 'nesterov': bool(t.nesterov),
      'weight_decay': t.weight_decay,
  }


def spec_of_variant(variant: str, image_size: int) -> dict:
  from configs import kinetics  # pylint: disable=import-outside-toplevel
  config = kinetics.get_config(variant)
  config.data.train_crop_size = image_size
  return spec_from_config(config)


def is_oom(error: BaseException) -> bool:
  return any(m in str(error) for m in OOM_MARKERS) or type(error).__name__ == 'OutOfMemoryError'


def run_batch(spec: dict, builder: str, batch: int, dtype: str, steps: int, warmup: int,
              device: str, channels_last: bool = True) -> dict:
  """One batch size: build, warm up, time. Raises on failure (the caller records it)."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch_slowfast  # pylint: disable=import-outside-toplevel
  from avslowfast_jax.tools import accelerators  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  cuda = device.startswith('cuda')
  if cuda:
    torch.cuda.reset_peak_memory_stats()
  fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
  model = torch_slowfast.build(spec, builder).to(device=device, memory_format=fmt).train()
  inputs = [torch.randn(s, device=device).contiguous(memory_format=fmt)
            for s in torch_slowfast.input_shapes(spec, batch)]
  labels = torch.randint(0, spec['model']['num_classes'], (batch,), device=device)
  kernels = [p for p in model.parameters() if p.ndim > 1]
  others = [p for p in model.parameters() if p.ndim <= 1]
  groups = [{'params': kernels, 'weight_decay': spec['weight_decay']},
            {'params': others, 'weight_decay': 0.0}]
  sgd = dict(lr=spec['base_lr'], momentum=spec['momentum'], nesterov=spec['nesterov'])
  fused = False
  if cuda:
    try:
      optimizer = torch.optim.SGD(groups, fused=True, **sgd)
      fused = True
    except (TypeError, RuntimeError):  # a torch without the fused SGD
      optimizer = torch.optim.SGD(groups, **sgd)
  else:
    optimizer = torch.optim.SGD(groups, **sgd)
  autocast = dtype == 'bfloat16'

  def step() -> float:
    with torch.autocast(device_type='cuda' if cuda else 'cpu', dtype=torch.bfloat16,
                        enabled=autocast):
      logits = torch_slowfast.call(model, inputs, builder)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()  # waits for the step, as the jax benchmark's float(loss)

  first = time.perf_counter()
  for _ in range(warmup):
    loss = step()
  warmup_seconds = time.perf_counter() - first
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  flops = torch_slowfast.forward_flops(torch_slowfast.build(spec, builder, 'meta'), spec,
                                       builder) * 3 * batch
  kind = torch.cuda.get_device_name() if cuda else 'cpu'
  row = {
      'per_device_batch': batch, 'step_seconds': seconds, 'step_seconds_all': times,
      'clips_per_sec': batch / seconds, 'warmup_seconds': warmup_seconds,
      'model_tflops_per_step': flops / 1e12, 'achieved_tflops_per_sec': flops / seconds / 1e12,
      'mfu': accelerators.utilisation(flops / seconds, kind, dtype),
      'params': sum(p.numel() for p in model.parameters()),
      'peak_bytes_allocated': torch.cuda.max_memory_allocated() if cuda else None,
      'fused_sgd': fused, 'loss': loss, 'error': None,
  }
  return row


def sweep(spec: dict, builder: str, batches, dtype: str, steps: int, warmup: int, device: str,
          budget_s: float, channels_last: bool = True, emit=None) -> list:
  """``run_batch`` for each batch in turn until one runs out of memory or the budget ends."""
  import gc  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  start = time.time()
  rows = []
  stopped = False
  for batch in batches:
    if stopped:
      break
    if time.time() - start > budget_s:
      row = {'per_device_batch': batch, 'error': f'skipped: over --budget_s={budget_s}'}
    else:
      try:
        row = run_batch(spec, builder, batch, dtype, steps, warmup, device, channels_last)
      except Exception as e:  # pylint: disable=broad-except
        row = {'per_device_batch': batch, 'error': f'{type(e).__name__}: {str(e)[:800]}',
               'out_of_memory': is_oom(e)}
        stopped = True  # a larger batch would not fit either (or fails the same way)
      finally:
        gc.collect()
        if device.startswith('cuda'):
          torch.cuda.empty_cache()
    rows.append(row)
    if emit:
      emit(row)
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--variant', default='avslowfast_4x16_r50',
                      help='configs/kinetics.py variant (ignored with --spec)')
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--spec', default='',
                      help='JSON of spec_from_config: the shapes and settings of a config')
  parser.add_argument('--builder', default='minimal', choices=('minimal', 'pytorchvideo'))
  parser.add_argument('--batches', nargs='+', type=int, default=[8])
  parser.add_argument('--dtype', default='bfloat16', choices=('bfloat16', 'float32'))
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--device', default='auto', help="'auto' (cuda if there), 'cuda', 'cpu'")
  parser.add_argument('--budget_s', type=float, default=1e9)
  parser.add_argument('--no_channels_last', action='store_true')
  args = parser.parse_args(argv)
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    print(json.dumps({'error': f'torch is not installed: {e}'}))
    return
  spec = json.loads(args.spec) if args.spec else spec_of_variant(args.variant, args.image_size)
  device = args.device
  if device == 'auto':
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
  if device.startswith('cuda'):
    torch.backends.cudnn.benchmark = True
  header = {'torch': torch.__version__, 'device': device,
            'device_name': torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu',
            'builder': args.builder, 'arch': spec['model']['arch'], 'dtype': args.dtype,
            'autocast': args.dtype == 'bfloat16', 'channels_last_3d': not args.no_channels_last,
            'cudnn_benchmark': device.startswith('cuda'), 'image_size': spec['image_size'],
            'threads': torch.get_num_threads()}
  if args.builder == 'pytorchvideo':
    try:
      import pytorchvideo  # pylint: disable=import-outside-toplevel,unused-import
    except ImportError as e:
      print(json.dumps({**header, 'error': f'pytorchvideo is not installed: {e}'}))
      return

  def emit(row):
    print(json.dumps({**header, **row}), flush=True)

  sweep(spec, args.builder, args.batches, args.dtype, args.steps, args.warmup, device,
        args.budget_s, not args.no_channels_last, emit)


if __name__ == '__main__':
  errors.run(main)
