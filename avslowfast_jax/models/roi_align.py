"""RoIAlign with the semantics of ``torchvision.ops.roi_align``, in a separable form.

torchvision's kernel (``csrc/ops/cpu/roi_align_kernel.cpp``) averages, for
every output bin, bilinear samples of the feature map on a regular grid of
``grid_h x grid_w`` points inside the bin:

* box corners are scaled by ``spatial_scale`` and, with ``aligned=True``,
  shifted by -0.5 (the half-pixel offset: pixel centres at integer
  coordinates); with ``aligned=False`` the box size is at least 1;
* ``sampling_ratio <= 0`` (adaptive): ``grid = ceil(roi_size / output_size)``
  per axis, so the grid depends on the box;
* a sample at ``y < -1`` or ``y > height`` (likewise ``x``) contributes 0;
  one in ``[-1, 0]`` is clamped to 0, and one at or past ``height - 1``
  reads row ``height - 1`` alone;
* the bin's value is the sum of its samples over ``max(grid_h * grid_w, 1)``.

The bilinear weight of a sample is the product of a weight over rows and a
weight over columns, and the "contributes 0" rule is the product of a
per-axis test, so the whole operation is separable: per box, a ``[P, H]``
matrix (each output row's average of its samples' row weights) and a
``[Q, W]`` matrix, contracted with the feature map by ``einsum``. No gather;
gradients reach the features by autodiff of the contraction (none reach the
boxes, as in torchvision).

Static shapes: the adaptive grid is data-dependent, so every box is sampled
on a static grid of ``max_samples`` points per bin and axis, of which the
first ``grid`` are used (the rest masked out). The default bound is
``ceil(size / output_size) + 1`` for a map axis of ``size``: exact for every
box up to ``output_size`` map cells longer than the map (boxes inside the
frame are at most as long as the map); a longer box is sampled on the capped
grid (its bins average fewer points).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp


def default_max_samples(size: int, output_size: int) -> int:
  """The static samples-per-bin bound of one axis: ``ceil(size / output_size) + 1``."""
  return math.ceil(size / output_size) + 1


def _axis_weights(start, length, size: int, output_size: int, sampling_ratio: int,
                  max_samples: int):
  """``[..., output_size, size]`` weights of one axis and the grid size ``[...]``.

  ``start``, ``length``: ``[...]`` box start and length on this axis, in
  feature-map coordinates (after scale and offset). Row ``p`` of the result
  is the sum over the bin's samples of their bilinear weights on this axis
  (zero for a sample outside ``[-1, size]``).
  """
  bin_size = length / output_size
  if sampling_ratio > 0:
    grid = jnp.full(jnp.shape(length), sampling_ratio, jnp.int32)
    num = sampling_ratio
  else:
    grid = jnp.minimum(jnp.ceil(length / output_size).astype(jnp.int32), max_samples)
    num = max_samples
  p = jnp.arange(output_size, dtype=jnp.float32)
  i = jnp.arange(num, dtype=jnp.float32)
  grid_f = jnp.maximum(grid, 1).astype(jnp.float32)[..., None, None]
  # [..., P, S]: sample coordinates, as the kernel computes them.
  coord = (start[..., None, None] + p[:, None] * bin_size[..., None, None]
           + (i[None, :] + 0.5) * bin_size[..., None, None] / grid_f)
  used = (i[None, :] < grid[..., None, None]) & (coord >= -1.0) & (coord <= size)
  coord = jnp.maximum(coord, 0.0)
  low = jnp.floor(coord)
  at_end = low >= size - 1
  low = jnp.where(at_end, size - 1, low)
  frac = jnp.where(at_end, 0.0, coord - low)
  high = jnp.where(at_end, low, low + 1)
  cells = jnp.arange(size, dtype=jnp.float32)
  weights = ((1.0 - frac)[..., None] * (cells == low[..., None])
             + frac[..., None] * (cells == high[..., None]))
  weights = jnp.where(used[..., None], weights, 0.0)
  return jnp.sum(weights, axis=-2), grid


def roi_align(features: jax.Array, boxes: jax.Array, output_size: Tuple[int, int], *,
              spatial_scale: float = 1.0, sampling_ratio: int = 0, aligned: bool = True,
              max_samples: Optional[Tuple[int, int]] = None) -> jax.Array:
  """RoIAlign of ``boxes`` on ``features``, as ``torchvision.ops.roi_align``.

  Args:
    features: ``[B, H, W, C]`` feature maps (channels last).
    boxes: ``[B, N, 4]`` boxes ``(x1, y1, x2, y2)`` of each map, in input
      coordinates (multiplied by ``spatial_scale`` to reach the map).
    output_size: ``(P, Q)`` bins per box.
    spatial_scale: map size / input size (1/16 for res5 of AVA's models).
    sampling_ratio: samples per bin and axis; ``<= 0`` = adaptive
      (``ceil(roi_size / output_size)``).
    aligned: the half-pixel offset (pixel centres at integer coordinates).
    max_samples: ``(rows, cols)`` static bound of the adaptive grid; default
      :func:`default_max_samples` of each axis.

  Returns:
    ``[B, N, P, Q, C]`` in the dtype of ``features``.
  """
  _, height, width, _ = features.shape
  out_h, out_w = output_size
  if max_samples is None:
    max_samples = (default_max_samples(height, out_h), default_max_samples(width, out_w))
  boxes = jax.lax.stop_gradient(boxes.astype(jnp.float32))
  offset = 0.5 if aligned else 0.0
  x1, y1, x2, y2 = (boxes[..., k] * spatial_scale - offset for k in range(4))
  roi_w, roi_h = x2 - x1, y2 - y1
  if not aligned:
    roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
  rows, grid_h = _axis_weights(y1, roi_h, height, out_h, sampling_ratio, max_samples[0])
  cols, grid_w = _axis_weights(x1, roi_w, width, out_w, sampling_ratio, max_samples[1])
  count = jnp.maximum(grid_h * grid_w, 1).astype(jnp.float32)
  rows = rows / count[..., None, None]
  # Contract rows first (the smaller intermediate for maps taller than the bins).
  dtype = features.dtype
  out = jnp.einsum('bnph,bhwc->bnpwc', rows.astype(dtype), features)
  return jnp.einsum('bnqw,bnpwc->bnpqc', cols.astype(dtype), out)
