"""Classification losses of the tasks (softmax, sigmoid) and top-k correctness.

All losses are means over the global batch, so the same batch gives the same
loss however it is split over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
  """Mean softmax cross-entropy against integer labels."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if label_smoothing > 0:
    onehot = optax.smooth_labels(onehot, label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot))


def sigmoid_cross_entropy(logits, multi_hot):
  """Mean over clips and classes of per-class binary cross-entropy (multi-label)."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32),
                                                     multi_hot.astype(jnp.float32)))


def topk_correct(logits, labels, k: int):
  """Per-clip 1.0 where the label is among the k highest logits."""
  k = min(k, logits.shape[-1])
  _, top = jax.lax.top_k(logits, k)
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
