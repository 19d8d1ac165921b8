"""The hierarchical audiovisual synchronisation (AVS) objective (paper section 3.5).

An auxiliary task at each fusion junction (``avs.junctions``): is this
visual clip in sync with this audio? In-sync pairs are the clip's own audio;
out-of-sync ones ("negatives") are the audio of another clip of the batch
(easy) or of the same video shifted by >= 0.5 s (hard), with an easy-to-hard
curriculum. :class:`SyncObjective` is what the train step asks for: the
step's negatives, and the loss and accuracy from the model's junction
embeddings (``aux['avs']``).

All losses are means over the global batch, so the same batch gives the same
loss however it is split over devices.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections


def contrastive_sync_loss(visual, audio, audio_negative, pair_mask, negative_mask,
                          margin: float = 0.99):
  """Contrastive loss of one junction (Korbar et al. 2018, arXiv 1807.00230).

  In-sync pairs ``(visual, audio)`` are pulled together by their squared
  distance; out-of-sync pairs ``(visual, audio_negative)`` are pushed apart by
  a squared hinge on the distance at ``margin``. Embeddings are L2-normalised
  and scaled by 0.5 (the model does it), so distances lie in [0, 1] and a
  margin just under 1 asks for nearly antipodal negatives. Masked pairs do not
  count; the sum is halved and divided by the number of counted clips.
  """
  visual = visual.astype(jnp.float32)
  pos_d2 = jnp.sum(jnp.square(visual - audio.astype(jnp.float32)), axis=-1)
  neg_d2 = jnp.sum(jnp.square(visual - audio_negative.astype(jnp.float32)), axis=-1)
  # sqrt has an infinite gradient at 0; the floor keeps it finite when a
  # negative happens to coincide with the visual embedding.
  neg_d = jnp.sqrt(jnp.maximum(neg_d2, 1e-12))
  neg = jnp.square(jnp.maximum(margin - neg_d, 0.0))
  pair_mask = pair_mask.astype(jnp.float32)
  negative_mask = negative_mask.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(pair_mask), 1.0)
  return (jnp.sum(pair_mask * pos_d2) + jnp.sum(negative_mask * neg)) / (2.0 * count)


def avs_loss(aux_avs: Mapping[str, Mapping[str, Any]], junctions, pair_mask, negative_mask,
             margin: float):
  """Sum over the configured junctions present in the model; returns ``(total, per_junction)``."""
  terms = {}
  for name in junctions:
    if name not in aux_avs:
      continue
    feats = aux_avs[name]
    if 'audio_negative' not in feats:
      raise ValueError(f'aux["avs"][{name!r}] has no "audio_negative": the model was not given '
                       'an audio_negative input')
    terms[name] = contrastive_sync_loss(feats['visual'], feats['audio'], feats['audio_negative'],
                                        pair_mask, negative_mask, margin)
  total = sum(terms.values()) if terms else jnp.float32(0.0)
  return total, terms


def avs_accuracy(aux_avs: Mapping[str, Mapping[str, Any]], junctions, mask):
  """Synchronisation accuracy: the share of counted clips whose in-sync audio lies closer to
  the visual embedding than their out-of-sync audio, averaged over the junctions."""
  mask = mask.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(mask), 1.0)
  accs = []
  for name in junctions:
    if name not in aux_avs or 'audio_negative' not in aux_avs[name]:
      continue
    feats = aux_avs[name]
    visual = feats['visual'].astype(jnp.float32)
    pos = jnp.sum(jnp.square(visual - feats['audio'].astype(jnp.float32)), axis=-1)
    neg = jnp.sum(jnp.square(visual - feats['audio_negative'].astype(jnp.float32)), axis=-1)
    accs.append(jnp.sum(mask * (pos < neg)) / count)
  return sum(accs) / len(accs) if accs else jnp.float32(0.0)


def choose_audio_negatives(rng, audio, audio_shifted: Optional[Any], use_hard, hard_fraction: float):
  """Negatives for AVS: easy = audio of another clip of the global batch, hard = shifted audio.

  Easy negatives roll the global batch by one, so clip i is paired with the
  audio of clip i-1 (always another clip when the batch has more than one).
  When ``use_hard`` (a traced bool, true after the curriculum switch) a random
  ``hard_fraction`` of the clips, exactly ``round(hard_fraction * B)`` of them,
  take their own video's shifted audio instead. Returns ``(negatives,
  is_hard)`` with ``is_hard`` a ``[B]`` float32 indicator.
  """
  batch = audio.shape[0]
  easy = jnp.roll(audio, 1, axis=0)
  if audio_shifted is None or hard_fraction <= 0:
    return easy, jnp.zeros((batch,), jnp.float32)
  num_hard = int(round(hard_fraction * batch))
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(rng, (batch,))))
  is_hard = jnp.logical_and(ranks < num_hard, use_hard)
  select = is_hard.reshape((batch,) + (1,) * (audio.ndim - 1))
  return jnp.where(select, audio_shifted, easy), is_hard.astype(jnp.float32)


def _per_clip_variance(x):
  return jnp.var(x.reshape(x.shape[0], -1).astype(jnp.float32), axis=-1)


# The AVS junctions in the order the network reaches them.
JUNCTIONS = ('pool1', 'res2', 'res3', 'res4', 'pool5')


def trivial_after(model) -> int:
  """Index in :data:`JUNCTIONS` from which a kept step's visual features have already
  taken in the in-sync audio, so that telling in-sync from out-of-sync audio there is
  partly trivial.

  A->FS and AV Non-local add the audio to Slow after the junction's visual embedding
  is taken, so the earliest fusion junction itself still counts; A->F->S adds it to
  Fast, which reaches Slow through the Fast->Slow lateral of the same junction, so
  that junction does not. Without audio laterals no junction is after a fusion.
  """
  stages = [JUNCTIONS.index(s) for s in model.audio_lateral_stages if s in JUNCTIONS]
  if not stages:
    return len(JUNCTIONS)
  earliest = min(stages)
  return earliest if model.fusion == 'a_f_s' else earliest + 1


def near_duplicates(audio, other, threshold: float):
  """``[B]`` True where the two log-mel inputs of a clip have cosine similarity >= threshold."""
  a = audio.reshape(audio.shape[0], -1).astype(jnp.float32)
  b = other.reshape(other.shape[0], -1).astype(jnp.float32)
  cosine = jnp.sum(a * b, axis=-1) * jax.lax.rsqrt(
      jnp.maximum(jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1), 1e-24))
  return cosine >= threshold


class SyncObjective:
  """The AVS objective of one config: negatives, loss and accuracy of a training step.

  ``enabled`` is false unless the model fuses audio (``model.arch ==
  'avslowfast'``) and ``avs.enabled`` names junctions; the step then skips it.

  Which junctions count on a step follows the authors' code (first author's
  audiovisual PySlowFast, ``AVSlowFast.gen_fusion_avs_pattern``): a step first
  decides whether the audio fusions run (not on a DropPathway-dropped step); AVS
  then counts at the junctions up to and including the earliest fusion that
  runs, since later visual features have already seen the in-sync audio. On a
  dropped step no fusion runs, so every junction counts (the audio pathway still
  runs for them).
  """

  def __init__(self, config: ml_collections.ConfigDict, total_steps: int):
    self.config = config.avs
    self.enabled = bool(config.model.arch == 'avslowfast' and config.avs.enabled
                        and config.avs.junctions)
    # The curriculum: hard negatives from this step on.
    self.hard_start_step = int(round(config.avs.hard_start * total_steps))
    self.trivial_from = trivial_after(config.model)

  def negatives(self, key, batch: Mapping[str, Any], step):
    """``(negatives [B, T_a, F, 1], is_hard [B])`` of the step's audio."""
    return choose_audio_negatives(key, batch['audio'], batch.get('audio_shifted'),
                                  step >= self.hard_start_step, self.config.hard_fraction)

  def junction_weights(self, present, dropped) -> dict:
    """``{junction: 1 or 0}`` for the step: 1 where the junction's term counts."""
    dropped = jnp.asarray(dropped, jnp.float32)
    return {name: (1.0 if JUNCTIONS.index(name) < self.trivial_from else dropped)
            for name in self.config.junctions if name in present}

  def loss(self, aux: Mapping[str, Any], batch: Mapping[str, Any], negatives, is_hard,
           dropped):
    """``(total, terms)``: the weighted AVS loss and the terms to log.

    A pair counts when its audio is real and not near-silent, and when its
    negative is not a near-duplicate of it (the authors' ``filter_duplicates``);
    its negative term counts when that audio is real and not near-silent too (a
    silent negative can be told apart without looking at synchronisation).
    """
    c = self.config
    audio_var = aux.get('audio_var', None)
    if audio_var is None:
      audio_var = _per_clip_variance(batch['audio'])
    real = batch.get('audio_mask', jnp.ones_like(audio_var))
    distinct = jnp.logical_not(near_duplicates(batch['audio'], negatives,
                                               c.duplicate_threshold))
    pair_mask = (audio_var >= c.min_audio_var).astype(jnp.float32) * real * distinct
    neg_real = jnp.where(is_hard > 0, real, jnp.roll(real, 1))
    negative_mask = pair_mask * neg_real * (_per_clip_variance(negatives) >= c.min_audio_var)
    weights = self.junction_weights(aux['avs'], dropped)
    _, per_junction = avs_loss(aux['avs'], tuple(weights), pair_mask, negative_mask, c.margin)
    terms = {f'loss_avs_{name}': weights[name] * value for name, value in per_junction.items()}
    total = sum(terms.values()) * c.weight if terms else jnp.float32(0.0)
    counted = sum(weights.values()) if weights else jnp.float32(0.0)
    accuracy = sum(weights[name] * avs_accuracy(aux['avs'], (name,), pair_mask * negative_mask)
                   for name in weights) if weights else jnp.float32(0.0)
    terms['loss_avs'] = total
    # The mean accuracy over the junctions that counted (0 on a step where none did).
    terms['avs_top1'] = accuracy / jnp.maximum(counted, 1.0)
    terms['avs_junctions'] = jnp.asarray(counted, jnp.float32)
    return total, terms
