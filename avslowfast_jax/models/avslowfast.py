"""The AVSlowFast network (and its SlowFast and Audio-only variants)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.blocks import VideoStem
from avslowfast_jax.models.fusion import AudiovisualNonLocal, FastToSlow
from avslowfast_jax.models.heads import ClassifierHead
from avslowfast_jax.models.norm import GroupBatchNorm
from avslowfast_jax.models.pathways import (STAGES, AudioPathway, l2_embed, residual_stage,
                                            stage_channels)

STAGE_BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The ``config.model`` fields the network reads, frozen (hashable) for flax.

  See ``configs/common.py`` for their meaning and defaults.
  """
  arch: str = 'avslowfast'
  stage_blocks: tuple = (3, 4, 6, 3)
  width: int = 64
  alpha_f: int = 8
  beta_f: float = 0.125
  fusion_conv_channel_ratio: int = 2
  fusion_kernel_size: int = 5
  fs_lateral_stages: tuple = ('pool1', 'res2', 'res3', 'res4')
  beta_a: float = 0.5
  fusion: str = 'a_fs'
  audio_lateral_stages: tuple = ('res3', 'res4')
  audio_pool5: bool = True
  a_fs_hidden_channels: int = 64
  nonlocal_stages: tuple = ()
  nonlocal_every: int = 2
  nonlocal_instantiation: str = 'dot_product'
  res5_spatial_stride: int = 2
  head: str = 'softmax'
  num_classes: int = 400
  num_nouns: int = 0
  dropout_rate: float = 0.5
  bn_group_size: int = 8
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  bn_fast_variance: bool = True
  freeze_bn: bool = False
  drop_pathway_mode: str = 'pathway'
  avs_embed_dim: int = 64
  dtype: str = 'float32'
  lower_convs: bool = True

  @classmethod
  def from_config(cls, config) -> 'ModelConfig':
    """From a ``config.model`` ConfigDict (or dict); unknown keys are ignored."""
    c = dict(config)
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in c.items() if k in names}
    if not c.get('stage_blocks'):
      kw['stage_blocks'] = STAGE_BLOCKS[int(c.get('depth', 50))]
    kw['stage_blocks'] = tuple(int(b) for b in kw['stage_blocks'])
    out = cls(**kw)
    out.validate()
    return out

  def validate(self):
    if self.arch not in ('avslowfast', 'slowfast', 'audio'):
      raise ValueError(f'unknown model.arch {self.arch!r}')
    if self.fusion not in ('a_fs', 'a_f_s', 'av_nonlocal'):
      raise ValueError(f'unknown model.fusion {self.fusion!r}')
    if self.drop_pathway_mode not in ('pathway', 'laterals'):
      raise ValueError(f'unknown model.drop_pathway_mode {self.drop_pathway_mode!r}')
    for s in self.audio_lateral_stages:
      if s not in ('res2', 'res3', 'res4'):
        raise ValueError(f'audio lateral stage {s!r}: must be res2, res3 or res4')
    for s in self.fs_lateral_stages:
      if s not in ('pool1', 'res2', 'res3', 'res4'):
        raise ValueError(f'Fast->Slow lateral stage {s!r}: must be pool1, res2, res3 or res4')


class AVSlowFast(nn.Module):
  """Audiovisual SlowFast network; ``config.arch`` picks AVSlowFast, SlowFast
  (visual only) or the Audio pathway alone.

  Call: ``model.apply(variables, inputs, train=..., drop_audio=...,
  audio_negative=None, rngs={'dropout': k}, mutable=['batch_stats'])`` ->
  ``(logits, aux)`` as in docs/design.md. ``inputs``: ``slow`` ``[B, T_s, H, W,
  3]``, ``fast`` ``[B, T_f, H, W, 3]``, ``audio`` ``[B, T_a, F, 1]``.

  The audio pathway (with its laterals and AVS projections) runs first; the
  visual pathways then consume its outputs. With ``train`` and a traced
  ``drop_audio`` in mode 'pathway', it runs under ``nn.cond`` and a dropped
  step computes none of it: laterals, pooled audio and AVS audio embeddings
  are zeros. In mode 'laterals' it always runs and only the fusion into the
  visual pathways is zeroed (the pool5 concat keeps the audio).
  """
  config: ModelConfig

  def _norm(self):
    c = self.config
    return functools.partial(GroupBatchNorm, group_size=c.bn_group_size, momentum=c.bn_momentum,
                             epsilon=c.bn_epsilon, frozen=c.freeze_bn,
                             fast_variance=c.bn_fast_variance,
                             dtype=_DTYPES[c.dtype])

  def _audio_laterals(self, slow_len: int, fast_len: int) -> tuple:
    """``(stage, target length, channels)`` of every audio->visual junction."""
    c = self.config
    if c.arch != 'avslowfast':
      return ()
    slow = stage_channels(c.width)
    fast = stage_channels(c.width, c.beta_f)
    out = []
    for stage in c.audio_lateral_stages:
      if c.fusion == 'a_f_s':
        out.append((stage, fast_len, fast[stage][1]))
        continue
      channels = slow[stage][1]
      if stage in c.fs_lateral_stages:
        channels += c.fusion_conv_channel_ratio * fast[stage][1]
      if c.fusion == 'av_nonlocal':
        channels //= 2  # the Non-local queries' width
      out.append((stage, slow_len, channels))
    return tuple(out)

  def _run_audio(self, pathway: AudioPathway, audio: jax.Array, train: bool, drop_audio):
    """Runs the audio pathway, under ``nn.cond`` when DropPathway may skip it."""
    c = self.config
    conditional = (train and c.drop_pathway_mode == 'pathway' and not self.is_initializing()
                   and not (isinstance(drop_audio, bool) and not drop_audio)
                   and drop_audio is not None)
    if not conditional:
      return pathway(audio, train)
    # Output structure from an abstract, unbound copy: the dropped branch
    # returns zeros of the same shapes without computing anything.
    shapes = jax.eval_shape(
        lambda a: pathway.clone(parent=None).init_with_output(jax.random.key(0), a, train)[0],
        jax.ShapeDtypeStruct(audio.shape, audio.dtype))
    zeros = lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    if isinstance(drop_audio, bool):  # static True: nothing to trace at all
      return zeros()
    return nn.cond(jnp.asarray(drop_audio, bool), lambda mdl, a: zeros(),
                   lambda mdl, a: mdl(a, train), pathway, audio)

  @nn.compact
  def __call__(self, inputs: dict, train: bool = False, drop_audio: Any = False,
               audio_negative: jax.Array | None = None):
    c = self.config
    dtype = _DTYPES[c.dtype]
    norm = self._norm()
    has_audio = c.arch in ('avslowfast', 'audio')
    has_visual = c.arch in ('avslowfast', 'slowfast')
    aux = {'avs': {}, 'features': {}}
    fuse_audio = c.arch == 'avslowfast'
    # 1 keeps the audio fusion, 0 drops it (DropPathway, both modes).
    keep = 1.0
    if train and fuse_audio and drop_audio is not None:
      keep = 1.0 - jnp.asarray(drop_audio, jnp.float32)

    # ------------------------------------------------------------ audio
    audio_out = None
    if has_audio:
      audio = inputs['audio'].astype(jnp.float32)
      batch = audio.shape[0]
      aux['audio_var'] = jnp.var(audio.reshape(batch, -1), axis=-1)
      audio_all = audio if audio_negative is None else jnp.concatenate(
          [audio, audio_negative.astype(jnp.float32)], axis=0)
      slow_len = inputs['slow'].shape[1] if has_visual else 1
      fast_len = inputs['fast'].shape[1] if has_visual else 1
      pathway = AudioPathway(c.stage_blocks, c.width, c.beta_a,
                             self._audio_laterals(slow_len, fast_len), c.a_fs_hidden_channels,
                             c.avs_embed_dim if fuse_audio else 0, norm=norm, dtype=dtype,
                             name='audio')
      audio_out = self._run_audio(pathway, audio_all, train,
                                  drop_audio if fuse_audio else False)
      positives = lambda t: t[:batch]
      laterals = jax.tree.map(positives, audio_out['laterals'])
      aux['features']['audio'] = positives(audio_out['pooled'])
      for junction, emb in audio_out['avs'].items():
        aux['avs'][junction] = {'audio': emb[:batch]}
        if audio_negative is not None:
          aux['avs'][junction]['audio_negative'] = emb[batch:]

    # ----------------------------------------------------------- visual
    if has_visual:
      slow_w = stage_channels(c.width)
      fast_w = stage_channels(c.width, c.beta_f)
      slow = VideoStem(slow_w['pool1'][1], 1, norm=norm, dtype=dtype, lower=c.lower_convs,
                       name='slow_stem')(inputs['slow'], train)
      fast = VideoStem(fast_w['pool1'][1], 5, norm=norm, dtype=dtype, lower=c.lower_convs,
                       name='fast_stem')(inputs['fast'], train)

      def fuse(stage, slow, fast):
        """Laterals after ``stage``: A->F, then Fast->Slow, then A->FS / AV-NL."""
        audio_here = fuse_audio and stage in c.audio_lateral_stages
        if audio_here and c.fusion == 'a_f_s':
          fast = fast + (keep * laterals[stage])[:, :, None, None, :].astype(fast.dtype)
        if stage in c.fs_lateral_stages:
          lateral = FastToSlow(c.fusion_conv_channel_ratio * fast.shape[-1], c.alpha_f,
                               c.fusion_kernel_size, norm=norm, dtype=dtype,
                               lower=c.lower_convs, name=f'fast_to_slow_{stage}')(fast, train)
          if lateral.shape[1] != slow.shape[1]:
            raise ValueError(f'Fast->Slow lateral at {stage}: {lateral.shape[1]} steps vs '
                             f'Slow {slow.shape[1]} (Fast frames must be alpha_f x Slow)')
          slow = jnp.concatenate([slow, lateral.astype(slow.dtype)], axis=-1)
        if audio_here:
          if c.avs_embed_dim:
            aux['avs'][stage]['visual'] = l2_embed(jnp.mean(slow, axis=(1, 2, 3)),
                                                   c.avs_embed_dim, f'avs_visual_{stage}')
          if c.fusion == 'a_fs':
            slow = slow + (keep * laterals[stage])[:, :, None, None, :].astype(slow.dtype)
          elif c.fusion == 'av_nonlocal':
            slow = AudiovisualNonLocal(laterals[stage].shape[-1], norm=norm, dtype=dtype,
                                       lower=c.lower_convs, name=f'av_nonlocal_{stage}')(
                                           slow, laterals[stage], train, keep)
        return slow, fast

      slow, fast = fuse('pool1', slow, fast)
      for i, stage in enumerate(STAGES):
        spatial = 1 if i == 0 else (c.res5_spatial_stride if stage == 'res5' else 2)
        nl_every = c.nonlocal_every if stage in c.nonlocal_stages else 0
        slow = residual_stage(slow, train, name=f'slow_{stage}', num_blocks=c.stage_blocks[i],
                              inner=slow_w[stage][0], features=slow_w[stage][1],
                              temporal_kernel=3 if stage in ('res4', 'res5') else 1,
                              stride=(1, spatial, spatial), norm=norm, dtype=dtype,
                              lower=c.lower_convs, nonlocal_every=nl_every,
                              nonlocal_instantiation=c.nonlocal_instantiation)
        fast = residual_stage(fast, train, name=f'fast_{stage}', num_blocks=c.stage_blocks[i],
                              inner=fast_w[stage][0], features=fast_w[stage][1],
                              temporal_kernel=3, stride=(1, spatial, spatial), norm=norm,
                              dtype=dtype, lower=c.lower_convs)
        if stage != 'res5':
          slow, fast = fuse(stage, slow, fast)
      aux['res5'] = {'slow': slow, 'fast': fast}
      aux['features']['slow'] = jnp.mean(slow, axis=(1, 2, 3)).astype(jnp.float32)
      aux['features']['fast'] = jnp.mean(fast, axis=(1, 2, 3)).astype(jnp.float32)

    # ------------------------------------------------------------- head
    pooled = []
    if has_visual:
      pooled += [aux['features']['slow'], aux['features']['fast']]
      if fuse_audio and c.avs_embed_dim:
        aux['avs']['pool5']['visual'] = l2_embed(jnp.concatenate(pooled, axis=-1),
                                                 c.avs_embed_dim, 'avs_visual_pool5')
    if has_audio and (c.audio_pool5 or not has_visual):
      pooled.append(aux['features']['audio'])
    logits = ClassifierHead(c.head, c.num_classes, c.num_nouns, c.dropout_rate,
                            name='head')(jnp.concatenate(pooled, axis=-1), train)
    return logits, aux
