"""Label-free audiovisual pretraining (paper section 6): AVS + rotation prediction.

The labels of the dataset are never read. Two pretext losses, each of which
can be switched off (the ablation of the paper's Table A.1):

- hierarchical audiovisual synchronisation (AVS, ``avs.enabled``): the
  contrastive loss the train step adds for every task, with its easy-to-hard
  negatives curriculum (``avs.hard_start``, ``avs.hard_fraction``);
- rotation prediction (``pretext.rotation``): every frame of both visual
  pathways of a clip is rotated by the same multiple of 90 degrees, drawn per
  clip from the step's key (:meth:`Pretrain.transform_inputs`); the audio is
  not. A 4-way linear head on the pooled visual features (Slow and Fast, not
  the audio) predicts the multiple. Crops must be square so that a rotated
  clip keeps its shape.

The head's parameters are ``head/rotation/...``: a transfer run with the
default ``train.init_skip = ('head',)`` drops them (and reports so).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.heads import classifier_init
from avslowfast_jax.tasks.base import Task, register, softmax_scores
from avslowfast_jax.losses import classification as losses
from data_pipelines.errors import UserError

NUM_ROTATIONS = 4  # 0, 90, 180, 270 degrees
VISUAL_KEYS = ('slow', 'fast')


class RotationHead(nn.Module):
  """Pooled visual features (``aux['features']`` slow, fast) -> linear -> 4 rotation logits."""

  @nn.compact
  def __call__(self, aux: dict, inputs: dict, train: bool):
    del inputs, train
    pooled = [aux['features'][k] for k in VISUAL_KEYS if k in aux['features']]
    if not pooled:  # an audio-only model: nothing to rotate, a constant head
      return jnp.zeros((aux['pool5'].shape[0], NUM_ROTATIONS), jnp.float32)
    x = jnp.concatenate(pooled, axis=-1).astype(jnp.float32)
    return nn.Dense(NUM_ROTATIONS, kernel_init=classifier_init, name='rotation')(x)


def rotate_clips(video, quarter_turns):
  """Rotates each clip of ``video`` ``[B, T, H, W, C]`` (H == W) by ``quarter_turns[b] * 90``
  degrees counter-clockwise in the (H, W) plane; every frame of a clip alike."""
  if video.shape[2] != video.shape[3]:
    raise UserError(f'rotation prediction needs square crops, got frames of '
                    f'{video.shape[2]}x{video.shape[3]} (set data.train_crop_size)')
  turns = quarter_turns.reshape((-1,) + (1,) * (video.ndim - 1))
  out = video
  for k in range(1, NUM_ROTATIONS):
    out = jnp.where(turns == k, jnp.rot90(video, k, axes=(2, 3)), out)
  return out


@register('pretrain')
class Pretrain(Task):
  """Self-supervised pretraining: no labels; rotation loss here, AVS loss in the train step."""
  label_keys = ()
  label_classes = {}  # reads no labels

  @property
  def rotation_on(self) -> bool:
    return bool(self.config.pretext.rotation) and self.config.model.arch != 'audio'

  def head(self):
    return RotationHead()

  def transform_inputs(self, batch, rng):
    if not self.rotation_on:
      return batch
    size = batch['fast'].shape[0]
    turns = jax.random.randint(rng, (size,), 0, NUM_ROTATIONS)
    out = dict(batch)
    for key in VISUAL_KEYS:
      if key in out:
        out[key] = rotate_clips(out[key], turns)
    out['rotation'] = turns
    return out

  def loss(self, logits, batch):
    if not self.rotation_on:
      return jnp.float32(0.0), {}
    loss = losses.softmax_cross_entropy(logits, batch['rotation'], NUM_ROTATIONS)
    return loss * self.config.pretext.rotation_weight, {'loss_rotation': loss}

  def train_metrics(self, logits, batch):
    if not self.rotation_on:
      return {}
    return {'rotation_top1': jnp.mean(losses.topk_correct(logits, batch['rotation'], 1))}

  def scores(self, logits):
    return softmax_scores(logits)

  def labels(self, batch):
    raise UserError("task 'pretrain' is label-free and has no evaluation: evaluate its backbone "
                    'by transfer (python -m avslowfast_jax.tools.transfer)')

  def evaluation(self):
    self.labels({})

  def video_metrics(self, scores, labels):
    return self.labels({})
