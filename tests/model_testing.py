"""Helpers shared by the model tests: the tiny model's config, random inputs, variables."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import kinetics


def tiny_model_config(arch='avslowfast', **model_overrides):
  """The tiny 8x8 model (alpha_f 4) with ``model`` fields overridden."""
  c = kinetics.get_config(f'tiny_{arch}_8x8_r50')
  c.model.num_classes = 5
  for key, value in model_overrides.items():
    setattr(c.model, key, value)
  return c


def tiny_inputs(batch=2, seed=0, slow_frames=2, alpha=4, size=32, audio_frames=32, mels=16):
  """Random inputs matching :func:`tiny_model_config`; Slow is every alpha-th Fast frame."""
  rng = np.random.default_rng(seed)
  fast = rng.standard_normal((batch, slow_frames * alpha, size, size, 3)).astype(np.float32)
  audio = rng.standard_normal((batch, audio_frames, mels, 1)).astype(np.float32)
  return {'slow': jnp.asarray(fast[:, ::alpha]), 'fast': jnp.asarray(fast),
          'audio': jnp.asarray(audio)}


def init(model, inputs, seed=0):
  """Variables of ``model`` for ``inputs`` (eager init of a tiny model)."""
  return model.init({'params': jax.random.key(seed), 'dropout': jax.random.key(seed + 1)},
                    inputs)

