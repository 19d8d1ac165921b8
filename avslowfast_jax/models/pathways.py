"""ResNet stages of the Slow, Fast and Audio pathways.

Visual stages are built straight into the calling module (names like
``slow_res2_block0``) because the Slow and Fast pathways interleave with their
laterals. The Audio pathway is one module (``audio``): it never depends on the
visual side, so it can run first and be skipped as a whole under ``lax.cond``
when DropPathway drops it; its own laterals and AVS projections live inside it
for the same reason.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.blocks import AudioStem, Bottleneck, ModuleFactory
from avslowfast_jax.models.fusion import AudioToVisual
from avslowfast_jax.models.nonlocal_block import NonLocal

STAGES = ('res2', 'res3', 'res4', 'res5')


def stage_channels(width: int, ratio: float = 1.0) -> dict[str, tuple[int, int]]:
  """``{stage: (bottleneck channels, output channels)}`` of a pathway whose
  channels are ``ratio`` times a ResNet of stem ``width`` (also ``'pool1'``)."""
  base = int(round(width * ratio))
  out = {'pool1': (base, base)}
  for i, stage in enumerate(STAGES):
    inner = base * 2 ** i
    out[stage] = (inner, 4 * inner)
  return out


def residual_stage(x: jax.Array, train: bool, *, name: str, num_blocks: int, inner: int,
                   features: int, temporal_kernel: int, stride: Sequence[int],
                   conv: ModuleFactory, norm: ModuleFactory, dtype, factorize_b: str = '',
                   dilation: int = 1, nonlocal_every: int = 0,
                   nonlocal_instantiation: str = 'dot_product', remat: str = 'none',
                   owner: nn.Module | None = None, stride_time_in_a: bool = False,
                   temporal_blocks: int = -1) -> jax.Array:
  """``num_blocks`` bottlenecks named ``{name}_block{i}`` in the calling module;
  the first carries ``stride``; the first ``temporal_blocks`` (-1: all) have
  ``temporal_kernel``, the others 1. With ``nonlocal_every`` = n > 0, a Non-local
  block ``{name}_nonlocal{i}`` follows every block with ``(i + 1) % n == 0``
  (n = 7 in res4 of R101 gives PySlowFast's blocks 6, 13, 20).

  ``remat`` (``model.remat``): 'blocks' recomputes each bottleneck's
  activations in the backward pass (only its input is kept), 'stages' the
  whole stage's (``owner``, the calling module, is then required). Parameter
  names are the same in every mode.
  """
  ones = tuple(1 for _ in stride)
  block = nn.remat(Bottleneck, static_argnums=(2,)) if remat == 'blocks' else Bottleneck

  def blocks(x):
    for i in range(num_blocks):
      kt = temporal_kernel if temporal_blocks < 0 or i < temporal_blocks else 1
      x = block(inner, features, conv, norm, kt, stride if i == 0 else ones,
                factorize_b, dilation, stride_time_in_a, name=f'{name}_block{i}')(x, train)
      if nonlocal_every and (i + 1) % nonlocal_every == 0:
        x = NonLocal(features // 2, conv, norm, nonlocal_instantiation, dtype,
                     name=f'{name}_nonlocal{i}')(x, train)
    return x

  if remat == 'stages':
    # Lifted over the calling module, so the blocks keep their names in it.
    return nn.remat(lambda module, x: blocks(x))(owner, x)
  return blocks(x)


def l2_embed(x: jax.Array, dim: int, name: str) -> jax.Array:
  """AVS embedding (the paper's section 3.4): linear projection to ``dim``, L2-normalised, x0.5.

  Created in the calling module as a ``Dense`` called ``name``; fp32."""
  y = nn.Dense(dim, name=name)(x.astype(jnp.float32))
  return 0.5 * y * jax.lax.rsqrt(jnp.sum(jnp.square(y), axis=-1, keepdims=True) + 1e-12)


class AudioPathway(nn.Module):
  """The Audio pathway on log-mel ``[B, T_a, F, 1]`` plus everything computed
  from audio alone.

  Stem ``[9x1, 1x9]`` (no pool), res2..res5 with the 3x3 conv factorised into
  3x1 and 1x3 in res2/res3 (``factorized``: 'parallel' | 'serial'), stride 2 in
  time and frequency at the first block of res3, res4 and res5 (and res2 with
  ``stride_res2``), in the centre conv (``stride_time_in_a``: the time stride
  in the 1x1 conv_a instead, as PyTorchVideo). Widths are ``beta_a`` x Slow.

  Attributes:
    stage_blocks: blocks per stage (res2..res5).
    width: Slow stem width; ``beta_a``: the audio/Slow channel ratio.
    laterals: ``((stage, target_length, channels), ...)``: one
      :class:`AudioToVisual` (``to_visual_{stage}``) per audio->visual junction.
    hidden: channels of each lateral's first conv; 0 = a quarter of the audio
      feature's channels at that stage.
    embed_dim: AVS embedding size; 0 = no AVS embeddings.

  Returns ``{'laterals': {stage: [B, T, C]}, 'pooled': [B, C_a] (fp32),
  'avs': {junction: [B, D]}}`` with AVS junctions = lateral stages + 'pool5'.
  """
  stage_blocks: Sequence[int]
  width: int
  beta_a: float
  conv: ModuleFactory
  norm: ModuleFactory
  laterals: Sequence[tuple[str, int, int]] = ()
  hidden: int = 64
  embed_dim: int = 0
  dtype: Any = jnp.float32
  remat: str = 'none'
  factorized: str = 'parallel'
  stride_time_in_a: bool = False
  stride_res2: bool = False

  @nn.compact
  def __call__(self, audio: jax.Array, train: bool) -> dict:
    widths = stage_channels(self.width, self.beta_a)
    x = AudioStem(widths['pool1'][1], self.conv, self.norm, name='stem')(audio, train)
    features = {'pool1': x}
    for i, stage in enumerate(STAGES):
      inner, out = widths[stage]
      stride = (2, 2) if i or self.stride_res2 else (1, 1)
      x = residual_stage(x, train, name=stage, num_blocks=self.stage_blocks[i], inner=inner,
                         features=out, temporal_kernel=1, stride=stride, conv=self.conv,
                         norm=self.norm, dtype=self.dtype,
                         factorize_b=self.factorized if stage in ('res2', 'res3') else '',
                         remat=self.remat, owner=self, stride_time_in_a=self.stride_time_in_a)
      features[stage] = x
    result = {'laterals': {}, 'avs': {}}
    for stage, length, channels in self.laterals:
      hidden = self.hidden or features[stage].shape[-1] // 4
      lateral = AudioToVisual(hidden, channels, length, self.conv, self.norm,
                              name=f'to_visual_{stage}')(features[stage], train)
      result['laterals'][stage] = lateral
      if self.embed_dim:
        result['avs'][stage] = l2_embed(jnp.mean(lateral, axis=1), self.embed_dim,
                                        f'avs_{stage}')
    result['pooled'] = jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
    if self.embed_dim:
      result['avs']['pool5'] = l2_embed(result['pooled'], self.embed_dim, 'avs_pool5')
    return result
