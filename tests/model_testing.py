"""Helpers shared by the model tests: the tiny model's config, random inputs, variables,
and the comparison of two computations' gradients."""

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


def assert_close_per_array(got, want, norm_rtol, max_rtol):
  """Each array of the tree ``got`` equals ``want``'s to a bound set by the array's size:
  ``||got - want|| <= norm_rtol * ||want||``, and every element within
  ``max_rtol * max|want|``.

  For values that are sums computed in another order (another XLA program, or the same
  one on a machine with other threads or vector width): where the terms of a sum cancel,
  the sum is small while its rounding error stays that of the terms, so such an element
  can differ by far more than a tight rtol of itself; the array as a whole cannot.
  """
  flat_got = jax.tree_util.tree_leaves_with_path(got)
  flat_want = dict(jax.tree_util.tree_leaves_with_path(want))
  assert jax.tree.structure(got) == jax.tree.structure(want) and flat_got
  for path, g in flat_got:
    name = jax.tree_util.keystr(path)
    g, w = np.asarray(g, np.float64), np.asarray(flat_want[path], np.float64)
    assert g.shape == w.shape, (name, g.shape, w.shape)
    if not np.any(w):
      np.testing.assert_array_equal(g, w, err_msg=name)
      continue
    diff = np.linalg.norm(g - w) / np.linalg.norm(w)
    assert diff <= norm_rtol, f'{name}: ||got - want|| / ||want|| = {diff:.2e} > {norm_rtol}'
    worst = np.max(np.abs(g - w)) / np.max(np.abs(w))
    assert worst <= max_rtol, f'{name}: max|got - want| / max|want| = {worst:.2e} > {max_rtol}'


# Parameter gradients of one model from two programs: a BatchNorm scale's gradient sums
# dy * x_hat over every activation of its channel, with much cancellation. fp32 summation
# order (vector width, threads, XLA's optimisation level) moves the tiny models' arrays by
# ~1e-4 of their norm and of their largest element: these bounds leave 15x and 75x room,
# while one array 5% off is 25x over GRAD_NORM_RTOL. (tests/test_model_lowering.py
# checks each rule tightly on its own.)
GRAD_NORM_RTOL = 2e-3
GRAD_MAX_RTOL = 1e-2


def assert_gradients_close(got, want):
  """Two computations of the same parameter gradients agree (:func:`assert_close_per_array`
  at GRAD_NORM_RTOL and GRAD_MAX_RTOL)."""
  assert_close_per_array(got, want, GRAD_NORM_RTOL, GRAD_MAX_RTOL)
