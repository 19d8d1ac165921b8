r"""A/B of trace-time variants of the train step, interleaved in one process.

  python benchmarks/ab_train_step.py --config configs/kinetics.py:avslowfast_8x8_r50 \
      --rounds 10 --variant 'pass' --variant 'previous.one_axis_as_2d_conv()' \
      [--batch_size 2] [--image_size 224]

Each ``--variant`` is a Python statement run before that variant is traced and
compiled (with ``conv``, ``blocks``, ``norm`` (the model modules) and
``previous`` (``benchmarks/previous_lowerings.py``) in scope); statements run
in order and their effects persist, so a later variant must undo what an
earlier one changed if it should not inherit it. All variants are compiled
first, then run in turn ``--rounds`` times, so that every variant sees the
same machine state: on a shared 2-core machine the speed drifts by 10-20%
between minutes, far more than most single changes, and separate processes
cannot resolve them. Prints one JSON line per variant (median, min, all
step times in seconds, and the loss of its step, which must agree across
variants that only change how the same model is computed).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from avslowfast_jax import host_memory
from avslowfast_jax.models import blocks, build_model, conv, norm
from avslowfast_jax.tools.model_stats import view_inputs

import previous_lowerings as previous  # noqa: E402
import train_step  # noqa: E402

# --config, --batch_size and --image_size are train_step.py's flags.
_CONFIG, _BATCH, _IMAGE = train_step._CONFIG, train_step._BATCH, train_step._IMAGE  # pylint: disable=protected-access
_VARIANTS = flags.DEFINE_multi_string('variant', [], 'Python statement per variant.')
_ROUNDS = flags.DEFINE_integer('rounds', 10, 'Timed steps per variant, interleaved.')


def main(argv):
  del argv
  if not _VARIANTS.value or _CONFIG.value is None:
    raise app.UsageError('give --config and at least one --variant')
  host_memory.keep_host_memory()
  config = _CONFIG.value
  model = build_model(config.model)
  shapes = view_inputs(config, _BATCH.value, _IMAGE.value)
  rng = np.random.default_rng(0)
  inputs = {k: jnp.asarray(rng.standard_normal(s.shape, np.float32)) for k, s in shapes.items()}
  labels = jnp.asarray(rng.integers(0, config.model.num_classes, _BATCH.value), jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(0), inputs)
  tx = optax.sgd(0.01, momentum=0.9, nesterov=True)
  params, batch_stats = variables['params'], variables['batch_stats']
  args = (params, batch_stats, tx.init(params), inputs, labels, jax.random.key(1),
          jnp.asarray(False))
  scope = {'conv': conv, 'blocks': blocks, 'norm': norm, 'previous': previous}
  compiled, losses = [], []
  for statement in _VARIANTS.value:
    exec(statement, scope)  # pylint: disable=exec-used
    step = train_step.make_train_step(model, tx, config.model.num_classes)
    c = step.lower(*args).compile()
    for _ in range(2):  # warm-up: first-touch of the temporaries
      out = jax.block_until_ready(c(*args))
    compiled.append(c)
    losses.append(float(out[-1]))
  times = [[] for _ in compiled]
  for _ in range(_ROUNDS.value):
    for i, c in enumerate(compiled):
      start = time.perf_counter()
      jax.block_until_ready(c(*args))
      times[i].append(time.perf_counter() - start)
  for statement, t, loss in zip(_VARIANTS.value, times, losses):
    print(json.dumps({'variant': statement, 'step_seconds': round(statistics.median(t), 3),
                      'min': round(min(t), 3), 'all': [round(x, 3) for x in t], 'loss': loss,
                      'device': jax.devices()[0].platform}))


if __name__ == '__main__':
  app.run(main)
