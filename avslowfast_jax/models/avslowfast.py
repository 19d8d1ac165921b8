"""The AVSlowFast network (and its SlowFast and Audio-only variants)."""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models import ops as ops_lib
from avslowfast_jax.models.blocks import VideoStem
from avslowfast_jax.models.config import ModelConfig
from avslowfast_jax.models.conv import Conv
from avslowfast_jax.models.fusion import AudiovisualNonLocal, FastToSlow
from avslowfast_jax.models.norm import GroupBatchNorm
from avslowfast_jax.models.pathways import (STAGES, AudioPathway, l2_embed, residual_stage,
                                            stage_channels)

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


class AVSlowFast(nn.Module):
  """Audiovisual SlowFast network; ``config.arch`` picks AVSlowFast, SlowFast
  (visual only) or the Audio pathway alone.

  Call: ``model.apply(variables, inputs, train=..., drop_audio=...,
  audio_negative=None, rngs={'dropout': k}, mutable=['batch_stats'])`` ->
  ``(logits, aux)`` as in docs/design.md. ``inputs``: ``slow`` ``[B, T_s, H, W,
  3]``, ``fast`` ``[B, T_f, H, W, 3]``, ``audio`` ``[B, T_a, F, 1]``, plus what
  the head reads (detection boxes).

  ``head`` is the task's head module (params ``head/...``), called as
  ``head(aux, inputs, train)`` on the backbone's outputs; without one the
  network returns ``logits = None`` and its features in ``aux``.

  ``eval_lateral_scale`` multiplies the audio laterals outside training (1:
  the paper's model; ``avslowfast_jax.drop_pathway.eval_lateral_scale``
  derives it from the config).

  The audio pathway (with its laterals and AVS projections) runs first; the
  visual pathways then consume its outputs. A dropped step (``drop_audio``)
  fuses no audio into the visual pathways. In mode 'pathway' (the paper's
  "drop the Audio pathway altogether") the head gets no pooled audio features
  either; without ``audio_negative`` (no AVS) the pathway then runs under
  ``nn.cond`` and a dropped step computes none of it, while with AVS it still
  runs, for the AVS terms alone. In mode 'laterals' (the authors' code) it
  always runs and only the fusion into the visual pathways is zeroed: the
  pool5 concat keeps the audio.
  """
  config: ModelConfig
  head: Optional[nn.Module] = None
  eval_lateral_scale: float = 1.0

  def _layers(self):
    """The ``conv`` and ``norm`` factories every layer of every pathway is built with."""
    c = self.config
    ops = ops_lib.select(c.conv_impl)
    dtype = _DTYPES[c.dtype]
    conv = functools.partial(Conv, dtype=dtype, ops=ops)
    norm = functools.partial(GroupBatchNorm, group_size=c.bn_group_size, momentum=c.bn_momentum,
                             epsilon=c.bn_epsilon, frozen=c.freeze_bn,
                             fast_variance=c.bn_fast_variance, dtype=dtype, ops=ops)
    return ops, conv, norm

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
      if stage in c.fast_to_slow_stages:
        channels += c.fusion_conv_channel_ratio * fast[stage][1]
      if c.fusion == 'av_nonlocal':
        channels //= 2  # the Non-local queries' width
      out.append((stage, slow_len, channels))
    return tuple(out)

  def _skips_audio(self, train: bool, drop_audio, audio_negative) -> bool:
    """Whether a dropped step skips the audio pathway's computation (mode 'pathway'
    without AVS, which would still need the audio)."""
    c = self.config
    return (train and c.arch == 'avslowfast' and c.drop_pathway_mode == 'pathway'
            and audio_negative is None and not self.is_initializing()
            and drop_audio is not None
            and not (isinstance(drop_audio, bool) and not drop_audio))

  def _run_audio(self, pathway: AudioPathway, audio: jax.Array, train: bool, drop_audio,
                 conditional: bool):
    """Runs the audio pathway, under ``nn.cond`` when a dropped step skips it."""
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

  def _fill_dropped(self, name: str, x: jax.Array, train: bool, drop_audio: Any) -> jax.Array:
    """``x`` (``[B, ...]``, an audio output) on a step that ran the audio pathway;
    on a dropped step, the running mean of ``x`` over the steps that ran it.

    The mean over the batch is tracked in ``batch_stats`` as an exponential
    moving average with BatchNorm's momentum, bias-corrected for the steps it
    has seen; outside training ``x`` passes unchanged.
    """
    c = self.config
    total = self.variable('batch_stats', f'audio_mean_{name}', jnp.zeros, x.shape[1:],
                          jnp.float32)
    count = self.variable('batch_stats', f'audio_mean_{name}_steps', jnp.zeros, (), jnp.float32)
    if not train or drop_audio is None or self.is_initializing():
      return x
    dropped = jnp.asarray(drop_audio, bool)
    m = c.bn_momentum
    seen = count.value
    mean = jnp.where(seen > 0, total.value / (1.0 - m ** jnp.maximum(seen, 1.0)), 0.0)
    filled = jnp.where(dropped, mean[None].astype(x.dtype), x)
    batch_mean = jnp.mean(x.astype(jnp.float32), axis=0)
    total.value = jnp.where(dropped, total.value, m * total.value + (1.0 - m) * batch_mean)
    count.value = jnp.where(dropped, seen, seen + 1.0)
    return filled

  @nn.compact
  def __call__(self, inputs: dict, train: bool = False, drop_audio: Any = False,
               audio_negative: jax.Array | None = None):
    c = self.config
    ops, conv, norm = self._layers()
    dtype = _DTYPES[c.dtype]
    has_audio = c.arch in ('avslowfast', 'audio')
    has_visual = c.arch in ('avslowfast', 'slowfast')
    aux = {'avs': {}, 'features': {}}
    fuse_audio = c.arch == 'avslowfast'
    # 1 keeps the audio fusion, 0 drops it (DropPathway, both modes; with the
    # running-mean fill the laterals carry the drop themselves).
    keep = 1.0 if train else self.eval_lateral_scale
    if train and fuse_audio and drop_audio is not None and c.drop_pathway_fill == 'zeros':
      keep = 1.0 - jnp.asarray(drop_audio, jnp.float32)

    # ------------------------------------------------------------ audio
    if has_audio:
      audio = inputs['audio'].astype(jnp.float32)
      batch = audio.shape[0]
      aux['audio_var'] = jnp.var(audio.reshape(batch, -1), axis=-1)
      audio_all = audio if audio_negative is None else jnp.concatenate(
          [audio, audio_negative.astype(jnp.float32)], axis=0)
      slow_len = inputs['slow'].shape[1] if has_visual else 1
      fast_len = inputs['fast'].shape[1] if has_visual else 1
      pathway = AudioPathway(c.blocks, c.width, c.beta_a, conv, norm,
                             self._audio_laterals(slow_len, fast_len), c.audio_lateral_hidden_channels,
                             c.avs_embed_dim if fuse_audio else 0, dtype=dtype, remat=c.remat,
                             factorized=c.audio_factorized_conv,
                             stride_time_in_a=c.audio_time_stride == 'conv_a',
                             stride_res2=c.audio_stride_res2, name='audio')
      skipped = self._skips_audio(train, drop_audio, audio_negative)
      audio_out = self._run_audio(pathway, audio_all, train, drop_audio, skipped)
      positives = lambda t: t[:batch]
      laterals = jax.tree.map(positives, audio_out['laterals'])
      aux['features']['audio'] = positives(audio_out['pooled'])
      if fuse_audio and c.drop_pathway_fill == 'running_mean':
        laterals = {stage: self._fill_dropped(f'lateral_{stage}', x, train, drop_audio)
                    for stage, x in laterals.items()}
        if c.drop_pathway_mode == 'pathway':
          aux['features']['audio'] = self._fill_dropped('pool5', aux['features']['audio'],
                                                        train, drop_audio)
      elif (fuse_audio and train and drop_audio is not None and c.drop_pathway_mode == 'pathway'
            and not skipped):
        # The pathway ran for AVS: the head still gets none of it on a dropped step.
        aux['features']['audio'] = aux['features']['audio'] * keep
      for junction, emb in audio_out['avs'].items():
        aux['avs'][junction] = {'audio': emb[:batch]}
        if audio_negative is not None:
          aux['avs'][junction]['audio_negative'] = emb[batch:]

    # ----------------------------------------------------------- visual
    if has_visual:
      slow_w = stage_channels(c.width)
      fast_w = stage_channels(c.width, c.beta_f)
      slow = VideoStem(slow_w['pool1'][1], 1, conv, norm, ops.max_pool_hw,
                       name='slow_stem')(inputs['slow'], train)
      fast = VideoStem(fast_w['pool1'][1], 5, conv, norm, ops.max_pool_hw,
                       name='fast_stem')(inputs['fast'], train)

      def fuse(stage, slow, fast):
        """Laterals after ``stage``: A->F, then Fast->Slow, then A->FS / AV-NL."""
        audio_here = fuse_audio and stage in c.audio_lateral_stages
        if audio_here and c.fusion == 'a_f_s':
          fast = fast + (keep * laterals[stage])[:, :, None, None, :].astype(fast.dtype)
        if stage in c.fast_to_slow_stages:
          lateral = FastToSlow(c.fusion_conv_channel_ratio * fast.shape[-1], c.alpha_f, conv,
                               norm, c.fusion_kernel_size,
                               name=f'fast_to_slow_{stage}')(fast, train)
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
            slow = AudiovisualNonLocal(laterals[stage].shape[-1], conv, norm, dtype,
                                       name=f'av_nonlocal_{stage}')(
                                           slow, laterals[stage], train, keep)
        return slow, fast

      slow, fast = fuse('pool1', slow, fast)
      for i, stage in enumerate(STAGES):
        spatial = 1 if i == 0 else (c.res5_spatial_stride if stage == 'res5' else 2)
        dilation = c.res5_dilation if stage == 'res5' else 1
        nl_every = c.nonlocal_every if stage in c.nonlocal_stages else 0
        kt_blocks = c.temporal_kernel_blocks[i] if c.temporal_kernel_blocks else -1
        slow = residual_stage(slow, train, name=f'slow_{stage}', num_blocks=c.blocks[i],
                              inner=slow_w[stage][0], features=slow_w[stage][1],
                              temporal_kernel=3 if stage in ('res4', 'res5') else 1,
                              stride=(1, spatial, spatial), conv=conv, norm=norm, dtype=dtype,
                              dilation=dilation, nonlocal_every=nl_every,
                              nonlocal_instantiation=c.nonlocal_instantiation, remat=c.remat,
                              owner=self, temporal_blocks=kt_blocks)
        fast = residual_stage(fast, train, name=f'fast_{stage}', num_blocks=c.blocks[i],
                              inner=fast_w[stage][0], features=fast_w[stage][1],
                              temporal_kernel=3, stride=(1, spatial, spatial), conv=conv,
                              norm=norm, dtype=dtype, dilation=dilation, remat=c.remat,
                              owner=self, temporal_blocks=kt_blocks)
        if stage != 'res5':
          slow, fast = fuse(stage, slow, fast)
      aux['res5'] = {'slow': slow, 'fast': fast}
      aux['features']['slow'] = jnp.mean(slow, axis=(1, 2, 3)).astype(jnp.float32)
      aux['features']['fast'] = jnp.mean(fast, axis=(1, 2, 3)).astype(jnp.float32)

    # ---------------------------------------------------------- pool5
    pooled = []
    if has_visual:
      pooled += [aux['features']['slow'], aux['features']['fast']]
      if fuse_audio and c.avs_embed_dim:
        aux['avs']['pool5']['visual'] = l2_embed(jnp.concatenate(pooled, axis=-1),
                                                 c.avs_embed_dim, 'avs_visual_pool5')
    if has_audio and (c.audio_pool5 or not has_visual):
      pooled.append(aux['features']['audio'])
    aux['pool5'] = jnp.concatenate(pooled, axis=-1)
    logits = None if self.head is None else self.head(aux, inputs, train)
    return logits, aux
