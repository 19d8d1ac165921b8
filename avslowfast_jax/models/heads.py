"""Head modules: called by the network as ``head(aux, inputs, train)``.

Tasks (``avslowfast_jax/tasks``) decide which head a model gets.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models import roi_align

# PySlowFast initialises the classifier with std 0.01.
classifier_init = nn.initializers.normal(0.01)


class PooledLinearHead(nn.Module):
  """``aux['pool5']`` (the concatenated pooled features) -> dropout -> linear layer(s).

  ``outputs`` names each linear layer and its size: one layer returns its
  ``[B, n]`` logits, several return ``{name: [B, n]}``. Logits are fp32.
  Submodules are named as the outputs (``classifier``; ``verb``, ``noun``).
  """
  outputs: Sequence[tuple[str, int]] = (('classifier', 400),)
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, aux: dict, inputs: dict, train: bool):
    del inputs
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(aux['pool5'].astype(jnp.float32))
    logits = {name: nn.Dense(size, kernel_init=classifier_init, name=name)(x)
              for name, size in self.outputs}
    return next(iter(logits.values())) if len(logits) == 1 else logits



class DetectionHead(nn.Module):
  """Per-box logits from the res5 maps (PySlowFast's ``ResNetRoIHead`` for AVA).

  For each visual pathway: the mean over time of ``aux['res5'][pathway]``,
  RoIAlign of ``inputs['boxes']`` (``[B, N, 4]`` pixels of the input frame)
  to ``resolution x resolution`` bins, the max over the bins. The pathways'
  box features are concatenated; with ``audio`` the clip's pooled audio
  feature (``aux['features']['audio']``) is appended to every box's. Then
  dropout and a linear layer (std 0.01): ``[B, N, num_classes]`` fp32 logits.
  """
  num_classes: int = 80
  dropout_rate: float = 0.5
  audio: bool = True
  resolution: int = 7
  spatial_scale: float = 1.0 / 16
  sampling_ratio: int = 0
  aligned: bool = True

  @nn.compact
  def __call__(self, aux: dict, inputs: dict, train: bool):
    boxes = inputs['boxes']
    features = []
    for pathway in ('slow', 'fast'):
      if pathway not in aux.get('res5', {}):
        continue
      fmap = jnp.mean(aux['res5'][pathway].astype(jnp.float32), axis=1)
      pooled = roi_align.roi_align(fmap, boxes, (self.resolution, self.resolution),
                                   spatial_scale=self.spatial_scale,
                                   sampling_ratio=self.sampling_ratio, aligned=self.aligned)
      features.append(jnp.max(pooled, axis=(2, 3)))
    if self.audio and 'audio' in aux.get('features', {}):
      audio = aux['features']['audio'].astype(jnp.float32)
      features.append(jnp.broadcast_to(audio[:, None, :],
                                       (*boxes.shape[:2], audio.shape[-1])))
    x = jnp.concatenate(features, axis=-1)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=classifier_init, name='classifier')(x)
