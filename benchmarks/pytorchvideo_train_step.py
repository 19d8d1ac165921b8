r"""The baseline of ``train_step.py``: PyTorchVideo's AVSlowFast builder, one SGD step.

  python benchmarks/pytorchvideo_train_step.py [--batch_size 2] [--steps 3] [--image_size 224]

``pytorchvideo.models.audio_visual_slowfast.create_audio_visual_slowfast`` with
its defaults is AVSlowFast 8x8 R50 (Kinetics-400 head). One step = forward,
cross-entropy, backward, SGD with Nesterov momentum, on random inputs (Slow
``[B, 3, 8, S, S]``, Fast ``[B, 3, 32, S, S]``, log-mel ``[B, 1, 128, 1, 80]``),
the same work ``train_step.py`` times for ``configs/kinetics.py:avslowfast_8x8_r50``.
Prints one JSON line (``step_seconds`` is the median of the timed steps after
one warm-up step). Needs the ``import`` extra (torch, pytorchvideo); torch uses
every core it is given, as XLA does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

# This checkout's package, not whichever one is installed (as train_step.py).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipelines import errors  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch_size', type=int, default=2)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--image_size', type=int, default=224)
  args = parser.parse_args(argv)
  try:
    import torch
    from avslowfast_jax.tools.import_weights import torchvision_stand_in
    with torchvision_stand_in():
      from pytorchvideo.models.audio_visual_slowfast import create_audio_visual_slowfast
  except ImportError as e:
    raise SystemExit(f'needs the import extra (pip install -e .[import]): {e}')

  torch.manual_seed(0)
  model = create_audio_visual_slowfast()
  model.train()
  b, s = args.batch_size, args.image_size
  inputs = [torch.randn(b, 3, 8, s, s), torch.randn(b, 3, 32, s, s), torch.randn(b, 1, 128, 1, 80)]
  labels = torch.randint(0, 400, (b,))
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

  def step():
    # The builder's fusion modules overwrite the list they are given: pass a copy.
    logits = model(list(inputs))
    loss = torch.nn.functional.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss)

  step()
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  print(json.dumps({
      'clips_per_sec': round(b / median, 3), 'step_seconds': round(median, 3),
      'step_seconds_all': [round(t, 3) for t in times], 'batch_size': b, 'image_size': s,
      'params': sum(p.numel() for p in model.parameters()), 'loss': loss,
      'torch': torch.__version__, 'threads': torch.get_num_threads(), 'device': 'cpu'}))


if __name__ == '__main__':
  errors.run(main)
