"""The network's settings (``config.model``): one definition of every field and its default.

``configs/common.py`` builds the ``model`` section of every experiment config
from :class:`ModelConfig`, so a field exists, and has its default, here only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from avslowfast_jax.models.ops import IMPLS
from data_pipelines.errors import UserError

# Residual blocks per stage (res2..res5) of each ResNet depth.
STAGE_BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

ARCHS = ('avslowfast', 'slowfast', 'audio')
FUSIONS = ('a_fs', 'a_f_s', 'av_nonlocal')
DROP_PATHWAY_MODES = ('pathway', 'laterals')
DROP_PATHWAY_FILLS = ('zeros', 'running_mean')
DTYPES = ('float32', 'bfloat16', 'float16')
REMATS = ('none', 'stages', 'blocks')
FACTORIZED_CONVS = ('parallel', 'serial')
AUDIO_TIME_STRIDES = ('conv_b', 'conv_a')
SLOW_FRAMES = ('stride', 'linspace')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The fields of ``config.model``, frozen (hashable) for flax."""
  # 'avslowfast' | 'slowfast' (visual only) | 'audio' (the Audio pathway alone).
  arch: str = 'avslowfast'
  # ResNet depth (50 | 101; 18 for experiments): picks stage_blocks when that is empty.
  depth: int = 50
  # Explicit residual blocks per stage (res2..res5); () = from depth.
  stage_blocks: tuple = ()
  # Slow pathway stem channels; every other width follows from it.
  width: int = 64
  # Fast/Slow frame-rate ratio and channel ratio.
  alpha_f: int = 8
  # Which Fast frames the Slow pathway sees (data_pipelines/clips.py): 'stride' (every
  # alpha_f-th, from the first: 0, a, 2a, ...) | 'linspace' (PySlowFast's pack_pathway_output
  # and PyTorchVideo's uniform_temporal_subsample: torch.linspace(0, T - 1, T // alpha_f)
  # truncated, first and last frames included), for weights trained with that rule.
  slow_frames: str = 'stride'
  beta_f: float = 0.125
  # Fast->Slow lateral: output channels = ratio * beta_f * C, temporal kernel size.
  fusion_conv_channel_ratio: int = 2
  fusion_kernel_size: int = 5
  fast_to_slow_stages: tuple = ('pool1', 'res2', 'res3', 'res4')
  # Audio/Slow channel ratio.
  beta_a: float = 0.5
  # Audio -> visual fusion: 'a_fs' (paper default) | 'a_f_s' | 'av_nonlocal' (Table 5a).
  fusion: str = 'a_fs'
  # Stages after which audio fuses into the visual pathways (Table 6: res3,4 is best;
  # PyTorchVideo's create_audio_visual_slowfast fuses after pool1, res2, res3 and res4).
  audio_lateral_stages: tuple = ('res3', 'res4')
  # Concatenate the pooled audio features into the head (the "+ pool5" of Table 6).
  audio_pool5: bool = True
  # Channels of the first temporal conv of an audio lateral; 0 = a quarter of the
  # audio feature's channels at that stage (PyTorchVideo; the authors' code used 64).
  audio_lateral_hidden_channels: int = 0
  # The factorised 3x3 of the audio res2/res3 blocks (Table 1's "[3x1, 1x3]"):
  # 'parallel' = a time conv and a frequency conv side by side, each with BN + ReLU
  # and the block's stride, summed (PyTorchVideo, and the notation of the [9x1, 1x9]
  # stem); 'serial' = the time conv, then the frequency conv.
  audio_factorized_conv: str = 'parallel'
  # Where the first audio block of res3..res5 strides time: 'conv_b' (the paper, section
  # 3.2: "stride 2^2 convolution in the center filter") | 'conv_a' (PyTorchVideo: the
  # 1x1 conv_a strides time, the centre conv frequency).
  audio_time_stride: str = 'conv_b'
  # Stride 2 in time and frequency also at res2's first block (section 3.2 reads "in each
  # stage from res2 to res5"; the authors' code and PyTorchVideo stride from res3 on).
  audio_stride_res2: bool = False
  # Per stage (res2..res5) of the Slow and Fast pathways, how many leading blocks keep
  # the stage's temporal kernel; the later blocks use 1 (PySlowFast's
  # RESNET.NUM_BLOCK_TEMP_KERNEL). () = every block. PySlowFast's R101 "50_50" models,
  # e.g. its AVA SLOWFAST_32x2_R101_50_50, inflate as R50 does: (3, 4, 6, 3).
  temporal_kernel_blocks: tuple = ()
  # Non-local blocks: stages (e.g. ('res4',) for R101+NL), after every n-th block.
  nonlocal_stages: tuple = ()
  nonlocal_every: int = 2
  nonlocal_instantiation: str = 'dot_product'  # 'dot_product' | 'softmax'
  # res5's spatial stride, and the dilation of its 3x3 convs (AVA: stride 1, dilation 2).
  res5_spatial_stride: int = 2
  res5_dilation: int = 1
  # Head sizes (the task decides the head): classes (verbs for EPIC), nouns, dropout.
  num_classes: int = 400
  num_nouns: int = 0
  dropout_rate: float = 0.5
  # BatchNorm: statistics over groups of this many clips; momentum in the flax
  # convention (0.9 = PyTorch 0.1); one-pass variance E[x^2] - E[x]^2 (flax's
  # default) or two-pass; frozen = affine (running statistics) for fine-tuning.
  bn_group_size: int = 8
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  bn_fast_variance: bool = True
  freeze_bn: bool = False
  # DropPathway: 'pathway' skips the audio pathway on a dropped step, 'laterals'
  # computes it and zeroes only the audio laterals.
  drop_pathway_mode: str = 'pathway'
  # What a dropped step feeds the visual side in place of the audio: 'zeros'
  # (paper section 3.4) or 'running_mean', a running average of the audio
  # laterals (and, in mode 'pathway', of the pooled audio features) over the
  # steps that ran the audio pathway, the alternative that section 3.4 reports
  # as giving similar results.
  drop_pathway_fill: str = 'zeros'
  # AVS projection size of the junction features.
  avs_embed_dim: int = 64
  # Compute dtype: 'float32' | 'bfloat16' (parameters stay fp32).
  dtype: str = 'float32'
  # How convolutions, the stem max-pool and BatchNorm are computed (models/ops.py):
  # 'auto' (the CPU forms on the CPU backend, native elsewhere) | 'native' | 'cpu'.
  conv_impl: str = 'auto'
  # Rematerialisation (activation checkpointing) of the residual stages: 'none' |
  # 'stages' (keep each stage's input, recompute the stage in the backward pass) |
  # 'blocks' (keep each bottleneck's input). Less activation memory for more compute.
  remat: str = 'none'

  @property
  def blocks(self) -> tuple:
    """Residual blocks per stage: ``stage_blocks``, else those of ``depth``."""
    return tuple(int(b) for b in self.stage_blocks) or STAGE_BLOCKS[self.depth]

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> 'ModelConfig':
    """From a ``config.model`` ConfigDict (or dict); an unknown key is an error naming it."""
    values = dict(config)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
      raise UserError(f'Unknown config.model fields {unknown}; the fields are {names}')
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    out = cls(**kw)
    out.validate()
    return out

  def validate(self) -> None:
    def check(field, allowed):
      if getattr(self, field) not in allowed:
        raise UserError(f'config.model.{field}={getattr(self, field)!r}: expected one of '
                         f'{tuple(allowed)}')
    check('arch', ARCHS)
    check('fusion', FUSIONS)
    check('drop_pathway_mode', DROP_PATHWAY_MODES)
    check('drop_pathway_fill', DROP_PATHWAY_FILLS)
    check('dtype', DTYPES)
    check('conv_impl', IMPLS)
    check('remat', REMATS)
    check('audio_factorized_conv', FACTORIZED_CONVS)
    check('audio_time_stride', AUDIO_TIME_STRIDES)
    check('slow_frames', SLOW_FRAMES)
    if not self.stage_blocks:
      check('depth', tuple(STAGE_BLOCKS))
    elif len(self.stage_blocks) != 4:
      raise UserError(f'config.model.stage_blocks={self.stage_blocks!r}: four stages '
                       '(res2..res5) expected')
    if self.temporal_kernel_blocks and len(self.temporal_kernel_blocks) != 4:
      raise UserError(f'config.model.temporal_kernel_blocks={self.temporal_kernel_blocks!r}: '
                       'four stages (res2..res5) expected, or () for every block')
    for field in ('audio_lateral_stages', 'fast_to_slow_stages'):
      stages = getattr(self, field)
      for s in ((stages,) if isinstance(stages, str) else stages):
        if s not in ('pool1', 'res2', 'res3', 'res4'):
          # On the command line a tuple of names needs its quotes: an unquoted
          # (res4,) arrives as the text '(res4,)'.
          raise UserError(f'config.model.{field}: {s!r} is not pool1, res2, res3 or res4 (the '
                           f'field is a tuple of those names, quoted on the command line: '
                           f'--config.model.{field}="(\'res4\',)")')
