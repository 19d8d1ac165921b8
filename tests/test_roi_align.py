"""RoIAlign (models/roi_align.py) against torchvision's semantics."""

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax.models.roi_align import roi_align


def reference_roi_align(features, boxes, output_size, spatial_scale, sampling_ratio, aligned):
  """A loop-by-loop NumPy transcription of torchvision's CPU kernel.

  ``features`` ``[H, W, C]``, ``boxes`` ``[N, 4]`` -> ``[N, P, Q, C]``.
  """
  height, width, channels = features.shape
  out_h, out_w = output_size
  out = np.zeros((len(boxes), out_h, out_w, channels), np.float64)
  offset = 0.5 if aligned else 0.0
  for n, box in enumerate(boxes):
    start_w, start_h, end_w, end_h = (float(v) * spatial_scale - offset for v in box)
    roi_w, roi_h = end_w - start_w, end_h - start_h
    if not aligned:
      roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out_h)
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out_w)
    count = max(grid_h * grid_w, 1)
    for ph in range(out_h):
      for pw in range(out_w):
        total = np.zeros(channels)
        for iy in range(grid_h):
          y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
          for ix in range(grid_w):
            x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
            if y < -1.0 or y > height or x < -1.0 or x > width:
              continue
            yy, xx = max(y, 0.0), max(x, 0.0)
            y_low, x_low = int(yy), int(xx)
            if y_low >= height - 1:
              y_low = y_high = height - 1
              yy = float(y_low)
            else:
              y_high = y_low + 1
            if x_low >= width - 1:
              x_low = x_high = width - 1
              xx = float(x_low)
            else:
              x_high = x_low + 1
            ly, lx = yy - y_low, xx - x_low
            hy, hx = 1.0 - ly, 1.0 - lx
            total += (hy * hx * features[y_low, x_low] + hy * lx * features[y_low, x_high]
                      + ly * hx * features[y_high, x_low] + ly * lx * features[y_high, x_high])
        out[n, ph, pw] = total / count
  return out


ARANGE = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
GOLDEN = {
    False: [[7.5, 8, 8.5, 9], [10, 10.5, 11, 11.5], [12.5, 13, 13.5, 14],
            [15, 15.5, 16, 16.5]],
    True: [[4.5, 5, 5.5, 6], [7, 7.5, 8, 8.5], [9.5, 10, 10.5, 11], [12, 12.5, 13, 13.5]],
}


@pytest.mark.parametrize('aligned', [False, True])
def test_golden_arange_case(aligned):
  boxes = jnp.asarray([[[1.0, 1.0, 3.0, 3.0]]])
  got = roi_align(jnp.asarray(ARANGE), boxes, (4, 4), spatial_scale=1.0, sampling_ratio=0,
                  aligned=aligned)
  np.testing.assert_allclose(np.asarray(got)[0, 0, :, :, 0], GOLDEN[aligned], atol=1e-5)
  ref = reference_roi_align(ARANGE[0], np.asarray(boxes[0]), (4, 4), 1.0, 0, aligned)
  np.testing.assert_allclose(ref[0, :, :, 0], GOLDEN[aligned], atol=1e-5)


def test_empty_box_gives_zeros_and_zero_gradient():
  features = jnp.asarray(np.random.default_rng(0).standard_normal((1, 6, 6, 3)), jnp.float32)
  boxes = jnp.asarray([[[2.0, 3.0, 2.0, 3.0], [1.0, 1.0, 4.0, 5.0]]])

  def loss(f):
    return jnp.sum(roi_align(f, boxes, (2, 2), aligned=True)[:, 0])

  out = roi_align(features, boxes, (2, 2), aligned=True)
  np.testing.assert_array_equal(np.asarray(out[0, 0]), 0.0)
  assert np.abs(np.asarray(out[0, 1])).sum() > 0
  np.testing.assert_array_equal(np.asarray(jax.grad(loss)(features)), 0.0)


def _random_case(seed, height=9, width=13, channels=3, num=6, scale=0.5):
  rng = np.random.default_rng(seed)
  features = rng.standard_normal((2, height, width, channels)).astype(np.float32)
  # Input coordinates (map / scale), some boxes a little outside the map, some tiny.
  ih, iw = height / scale, width / scale
  xy1 = rng.uniform([-3, -3], [iw - 2, ih - 2], size=(2, num, 2))
  wh = rng.uniform(0.0, 1.0, size=(2, num, 2)) * (np.array([iw, ih]) - xy1 + 2)
  wh[:, :2] = rng.uniform(0, 0.6, size=(2, 2, 2))  # smaller than a bin
  boxes = np.concatenate([xy1, xy1 + wh], axis=-1).astype(np.float32)
  return features, boxes


@pytest.mark.parametrize('aligned,sampling_ratio,output', [
    (True, 0, (7, 7)), (False, 0, (3, 4)), (True, 2, (2, 3))])
def test_matches_the_numpy_transcription(aligned, sampling_ratio, output):
  features, boxes = _random_case(1)
  got = np.asarray(roi_align(jnp.asarray(features), jnp.asarray(boxes), output, spatial_scale=0.5,
                             sampling_ratio=sampling_ratio, aligned=aligned))
  for b in range(2):
    want = reference_roi_align(features[b], boxes[b], output, 0.5, sampling_ratio, aligned)
    np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)


def test_matches_torchvision_if_installed():
  if importlib.util.find_spec('torchvision') is None:  # before paying for importing torch
    pytest.skip('torchvision is not installed')
  torch = pytest.importorskip('torch')
  try:
    from torchvision.ops import roi_align as tv_roi_align  # optional: not a CI dependency
  except (ImportError, RuntimeError, OSError) as e:  # absent, or a wheel whose ops fail to load
    pytest.skip(f'torchvision not usable: {e}')
  features, boxes = _random_case(2)
  rois = torch.tensor(np.concatenate(
      [np.repeat(np.arange(2.0), boxes.shape[1])[:, None], boxes.reshape(-1, 4)], axis=1),
                      dtype=torch.float32)
  want = tv_roi_align(torch.tensor(features).permute(0, 3, 1, 2), rois, (7, 7), 0.5, 0,
                      aligned=True).permute(0, 2, 3, 1).numpy()
  got = np.asarray(roi_align(jnp.asarray(features), jnp.asarray(boxes), (7, 7), spatial_scale=0.5))
  np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)


def test_gradient_matches_the_transcription():
  """RoIAlign is linear in the features: its gradient w.r.t. feature (h, w, c) for a
  cotangent g is sum(g * RoIAlign(e_hwc)); compare a random vector-Jacobian product
  with the transcription applied to the same cotangent."""
  features, boxes = _random_case(3, height=5, width=6, channels=2, num=4)
  cotangent = np.random.default_rng(4).standard_normal((2, 4, 7, 7, 2)).astype(np.float32)
  fn = lambda f: roi_align(f, jnp.asarray(boxes), (7, 7), spatial_scale=0.5)
  _, vjp = jax.vjp(fn, jnp.asarray(features))
  (grad,) = vjp(jnp.asarray(cotangent))
  want = np.zeros_like(features, dtype=np.float64)
  for b in range(2):
    for h in range(5):
      for w in range(6):
        basis = np.zeros((5, 6, 1))
        basis[h, w] = 1.0
        pooled = reference_roi_align(basis, boxes[b], (7, 7), 0.5, 0, True)[..., 0]
        want[b, h, w] = np.einsum('npq,npqc->c', pooled, cotangent[b])
  np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-4, atol=1e-5)
  assert np.abs(want).sum() > 0


def test_static_under_jit_with_traced_boxes():
  features, boxes = _random_case(5)
  fn = jax.jit(lambda f, b: roi_align(f, b, (7, 7), spatial_scale=0.5))
  got = np.asarray(fn(jnp.asarray(features), jnp.asarray(boxes)))
  want = reference_roi_align(features[0], boxes[0], (7, 7), 0.5, 0, True)
  np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)
