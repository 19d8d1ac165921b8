"""A minimal PyTorch SlowFast / AVSlowFast: this project's network, for speed comparisons.

The benchmark's PyTorch side (``torch_train_step.py``) runs PyTorchVideo's
builders where pytorchvideo is installed; accelerator images often lack it
(and its fvcore / iopath / PyAV), so this module builds the same network from
the model settings of ``avslowfast_jax`` (``config.model``, the fields of
``avslowfast_jax/models/config.py``) in plain ``torch.nn``: the same stage
widths and depths, temporal kernels, strides, Fast->Slow and Audio->visual
laterals (A->FS), and the pooled head. No weight loading: it is for timing.
With PyTorchVideo's settings (``fusion_kernel_size=7`` for 8x8,
``audio_time_stride='conv_a'``, audio laterals after pool1..res4) it has
exactly the parameters of PyTorchVideo's builders, and the same FLOPs
(tests/test_torch_slowfast.py).

Layout as PyTorchVideo's: video ``[B, 3, T, H, W]``, log-mel audio
``[B, 1, T_a, 1, F]`` (every layer a ``Conv3d``, so ``channels_last_3d``
applies to the whole network). Only what the benchmark's variants use is
built: ``fusion='a_fs'``, no Non-local blocks, no res5 dilation.

No jax import here: the PyTorch process of the device check must not touch
the accelerator through jax.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

STAGES = ('res2', 'res3', 'res4', 'res5')
STAGE_BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def stage_channels(width: int, ratio: float = 1.0) -> dict:
  """``{stage: (bottleneck channels, output channels)}``, as ``models.pathways.stage_channels``."""
  base = int(round(width * ratio))
  out = {'pool1': (base, base)}
  for i, stage in enumerate(STAGES):
    out[stage] = (base * 2 ** i, 4 * base * 2 ** i)
  return out


def conv_bn(cin: int, cout: int, kernel, stride=(1, 1, 1), relu: bool = True,
            zero_init: bool = False) -> nn.Sequential:
  """``Conv3d`` (no bias, padding ``k // 2``) + ``BatchNorm3d`` (+ ReLU)."""
  bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.1)
  if zero_init:
    nn.init.zeros_(bn.weight)
  layers = [nn.Conv3d(cin, cout, tuple(kernel), tuple(stride),
                      padding=tuple(k // 2 for k in kernel), bias=False), bn]
  if relu:
    layers.append(nn.ReLU(inplace=True))
  return nn.Sequential(*layers)


class Bottleneck(nn.Module):
  """``conv_a (kt x 1 x 1) -> conv_b -> conv_c`` + shortcut, as ``models.blocks.Bottleneck``.

  Video: ``conv_b`` is ``1x3x3`` with ``stride`` ``(1, s, s)``. Audio (``[B, C, T, 1, F]``):
  ``conv_b`` is ``3x1x3`` (time x frequency), or with ``factorize`` a ``3x1x1`` time and a
  ``1x1x3`` frequency conv ('parallel': side by side, summed; 'serial': one after the
  other); ``stride`` ``(t, 1, f)``. ``stride_time_in_a`` moves the time stride to conv_a.
  """

  def __init__(self, cin: int, inner: int, out: int, temporal_kernel: int, stride,
               audio: bool = False, factorize: str = '', stride_time_in_a: bool = False):
    super().__init__()
    stride = tuple(stride)
    stride_a = (1, 1, 1)
    if stride_time_in_a:
      stride_a, stride = (stride[0], 1, 1), (1,) + stride[1:]
    self.factorize = factorize
    self.conv_a = conv_bn(cin, inner, (temporal_kernel, 1, 1), stride_a)
    if factorize == 'parallel':
      self.conv_b_time = conv_bn(inner, inner, (3, 1, 1), stride)
      self.conv_b_freq = conv_bn(inner, inner, (1, 1, 3), stride)
    elif factorize == 'serial':
      self.conv_b_time = conv_bn(inner, inner, (3, 1, 1), (stride[0], 1, 1))
      self.conv_b_freq = conv_bn(inner, inner, (1, 1, 3), (1, 1, stride[2]))
    else:
      self.conv_b = conv_bn(inner, inner, (3, 1, 3) if audio else (1, 3, 3), stride)
    self.conv_c = conv_bn(inner, out, (1, 1, 1), relu=False, zero_init=True)
    total = tuple(a * b for a, b in zip(stride_a, stride))
    self.shortcut = (conv_bn(cin, out, (1, 1, 1), total, relu=False)
                     if cin != out or total != (1, 1, 1) else None)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.conv_a(x)
    if self.factorize == 'parallel':
      y = self.conv_b_time(y) + self.conv_b_freq(y)
    elif self.factorize == 'serial':
      y = self.conv_b_freq(self.conv_b_time(y))
    else:
      y = self.conv_b(y)
    y = self.conv_c(y)
    shortcut = x if self.shortcut is None else self.shortcut(x)
    return torch.relu(shortcut + y)


def res_stage(cin: int, inner: int, out: int, blocks: int, temporal_kernel: int, stride,
              **kw) -> nn.Sequential:
  """``blocks`` bottlenecks, the first with ``stride``."""
  return nn.Sequential(*[
      Bottleneck(cin if i == 0 else out, inner, out, temporal_kernel,
                 stride if i == 0 else (1, 1, 1), **kw) for i in range(blocks)])


class VideoStem(nn.Module):
  """``kt x 7 x 7`` conv (spatial stride 2) + BN + ReLU + ``1x3x3`` max-pool (stride 2)."""

  def __init__(self, out: int, temporal_kernel: int):
    super().__init__()
    self.conv = conv_bn(3, out, (temporal_kernel, 7, 7), (1, 2, 2))
    self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))

  def forward(self, x):
    return self.pool(self.conv(x))


class AudioStem(nn.Module):
  """The ``[9x1, 1x9]`` stem: a time and a frequency conv, summed, BN, ReLU; no pool."""

  def __init__(self, out: int):
    super().__init__()
    self.conv_time = nn.Conv3d(1, out, (9, 1, 1), padding=(4, 0, 0), bias=False)
    self.conv_freq = nn.Conv3d(1, out, (1, 1, 9), padding=(0, 0, 4), bias=False)
    self.bn = nn.BatchNorm3d(out, eps=1e-5, momentum=0.1)

  def forward(self, x):
    return torch.relu(self.bn(self.conv_time(x) + self.conv_freq(x)))


class AudioToVisual(nn.Module):
  """Mean over frequency, then two kernel-5 temporal convs with BN + ReLU, the second strided."""

  def __init__(self, cin: int, hidden: int, out: int, stride: int):
    super().__init__()
    self.block = nn.Sequential(conv_bn(cin, hidden, (5, 1, 1)),
                               conv_bn(hidden, out, (5, 1, 1), (stride, 1, 1)))

  def forward(self, audio):
    return self.block(torch.mean(audio, dim=-1, keepdim=True))


class SlowFast(nn.Module):
  """SlowFast (``arch='slowfast'``) or AVSlowFast (``'avslowfast'``, A->FS fusion).

  ``forward(slow, fast, audio=None)`` -> fp32-compatible logits ``[B, num_classes]``.
  """

  def __init__(self, spec: Mapping[str, Any]):
    super().__init__()
    m = dict(spec['model'])
    self.arch = m['arch']
    if self.arch not in ('slowfast', 'avslowfast'):
      raise NotImplementedError(f"arch {self.arch!r}: only 'slowfast' and 'avslowfast'")
    if self.arch == 'avslowfast' and m['fusion'] != 'a_fs':
      raise NotImplementedError(f"fusion {m['fusion']!r}: only 'a_fs'")
    if m.get('nonlocal_stages') or m.get('res5_dilation', 1) != 1 or \
        m.get('temporal_kernel_blocks'):
      raise NotImplementedError('Non-local blocks, res5 dilation and temporal_kernel_blocks')
    blocks = tuple(m.get('stage_blocks') or ()) or STAGE_BLOCKS[m['depth']]
    slow_w = stage_channels(m['width'])
    fast_w = stage_channels(m['width'], m['beta_f'])
    ratio, alpha = m['fusion_conv_channel_ratio'], m['alpha_f']
    slow_len = spec['slow_frames']
    self.f2s_stages = tuple(m['fast_to_slow_stages'])
    self.audio_stages = tuple(m['audio_lateral_stages']) if self.arch == 'avslowfast' else ()
    self.audio_pool5 = self.arch == 'avslowfast' and m['audio_pool5']

    self.slow_stem = VideoStem(slow_w['pool1'][1], 1)
    self.fast_stem = VideoStem(fast_w['pool1'][1], 5)
    self.slow_stages, self.fast_stages = nn.ModuleList(), nn.ModuleList()
    self.fast_to_slow, self.to_visual = nn.ModuleDict(), nn.ModuleDict()
    slow_c, fast_c = slow_w['pool1'][1], fast_w['pool1'][1]

    audio_c, audio_len = {}, {}
    if self.arch == 'avslowfast':
      audio_w = stage_channels(m['width'], m['beta_a'])
      self.audio_stem = AudioStem(audio_w['pool1'][1])
      self.audio_res = nn.ModuleList()
      c, length = audio_w['pool1'][1], spec['audio_frames']
      audio_c['pool1'], audio_len['pool1'] = c, length
      for i, stage in enumerate(STAGES):
        inner, out = audio_w[stage]
        strided = i > 0 or m['audio_stride_res2']
        self.audio_res.append(res_stage(
            c, inner, out, blocks[i], 1, (2, 1, 2) if strided else (1, 1, 1), audio=True,
            factorize=m['audio_factorized_conv'] if stage in ('res2', 'res3') else '',
            stride_time_in_a=m['audio_time_stride'] == 'conv_a'))
        c, length = out, length // 2 if strided else length
        audio_c[stage], audio_len[stage] = c, length

    def fusion_modules(stage):
      nonlocal slow_c
      if stage in self.f2s_stages:
        self.fast_to_slow[stage] = conv_bn(fast_c, ratio * fast_c,
                                           (m['fusion_kernel_size'], 1, 1), (alpha, 1, 1))
        slow_c += ratio * fast_c
      if stage in self.audio_stages:
        hidden = m['audio_lateral_hidden_channels'] or audio_c[stage] // 4
        self.to_visual[stage] = AudioToVisual(audio_c[stage], hidden, slow_c,
                                              audio_len[stage] // slow_len)

    fusion_modules('pool1')
    for i, stage in enumerate(STAGES):
      spatial = 1 if i == 0 else (m['res5_spatial_stride'] if stage == 'res5' else 2)
      inner, out = slow_w[stage]
      self.slow_stages.append(res_stage(slow_c, inner, out, blocks[i],
                                        3 if stage in ('res4', 'res5') else 1,
                                        (1, spatial, spatial)))
      inner, fout = fast_w[stage]
      self.fast_stages.append(res_stage(fast_c, inner, fout, blocks[i], 3,
                                        (1, spatial, spatial)))
      slow_c, fast_c = out, fout
      if stage != 'res5':
        fusion_modules(stage)
    features = slow_c + fast_c + (audio_c['res5'] if self.audio_pool5 else 0)
    self.dropout = nn.Dropout(m['dropout_rate'])
    self.classifier = nn.Linear(features, m['num_classes'])

  def _fuse(self, stage, slow, fast, laterals):
    if stage in self.f2s_stages:
      slow = torch.cat([slow, self.fast_to_slow[stage](fast)], dim=1)
    if stage in laterals:
      slow = slow + laterals[stage]  # [B, C, T, 1, 1] over every position
    return slow

  def forward(self, slow, fast, audio=None):
    laterals, pooled_audio = {}, None
    if self.arch == 'avslowfast':
      a = self.audio_stem(audio)
      features = {'pool1': a}
      for stage, layer in zip(STAGES, self.audio_res):
        a = layer(a)
        features[stage] = a
      laterals = {stage: self.to_visual[stage](features[stage]) for stage in self.audio_stages}
      pooled_audio = a.mean(dim=(2, 3, 4))
    slow, fast = self.slow_stem(slow), self.fast_stem(fast)
    slow = self._fuse('pool1', slow, fast, laterals)
    for stage, slow_layer, fast_layer in zip(STAGES, self.slow_stages, self.fast_stages):
      slow, fast = slow_layer(slow), fast_layer(fast)
      if stage != 'res5':
        slow = self._fuse(stage, slow, fast, laterals)
    pooled = [slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))]
    if self.audio_pool5:
      pooled.append(pooled_audio)
    return self.classifier(self.dropout(torch.cat(pooled, dim=1)))


def input_shapes(spec: Mapping[str, Any], batch: int) -> list:
  """``[slow, fast(, audio)]`` shapes of a batch, PyTorchVideo's layout."""
  s = spec['image_size']
  shapes = [(batch, 3, spec['slow_frames'], s, s), (batch, 3, spec['fast_frames'], s, s)]
  if spec['model']['arch'] == 'avslowfast':
    shapes.append((batch, 1, spec['audio_frames'], 1, spec['mels']))
  return shapes


def build_pytorchvideo(spec: Mapping[str, Any]) -> nn.Module:
  """PyTorchVideo's ``create_slowfast`` / ``create_audio_visual_slowfast`` at the spec's
  shapes (its own network: 7x1x1 Fast->Slow kernel for alpha 4, 5x1x1 for alpha 8 as
  PySlowFast, audio laterals after pool1..res4, audio time stride in conv_a)."""
  # pylint: disable=import-outside-toplevel  (pytorchvideo only where this builder is asked for)
  from avslowfast_jax.tools.import_weights import torchvision_stand_in
  with torchvision_stand_in():
    from pytorchvideo.models import audio_visual_slowfast as avsf
    from pytorchvideo.models.slowfast import create_slowfast
  m = spec['model']
  alpha, slow_len = m['alpha_f'], spec['slow_frames']
  beta = int(round(1 / m['beta_f']))
  kernel = 7 if alpha == 4 else 5
  final = spec['image_size'] // 32
  depth = m['depth'] if not m.get('stage_blocks') else \
      {tuple(v): k for k, v in {18: (1, 1, 1, 1), 50: (3, 4, 6, 3),
                                101: (3, 4, 23, 3)}.items()}[tuple(m['stage_blocks'])]
  width = m['width']
  common = dict(model_depth=depth, model_num_class=m['num_classes'],
                dropout_rate=m['dropout_rate'], slowfast_conv_channel_fusion_ratio=
                m['fusion_conv_channel_ratio'])
  if m['arch'] == 'slowfast':
    return create_slowfast(
        slowfast_channel_reduction_ratio=(beta,), stem_dim_outs=(width, width // beta),
        slowfast_fusion_conv_kernel_size=(kernel, 1, 1),
        slowfast_fusion_conv_stride=(alpha, 1, 1),
        head_pool_kernel_sizes=((slow_len, final, final),
                                (spec['fast_frames'], final, final)), **common)
  audio_ratio = int(round(1 / m['beta_a']))
  t_audio = spec['audio_frames']
  # Audio->visual strides after pool1, res2..res5: the audio length there over Slow's.
  lengths = (t_audio, t_audio, t_audio // 2, t_audio // 4, t_audio // 8)
  fusion = avsf.AudioToSlowFastFusionBuilder(
      slowfast_channel_reduction_ratio=beta, slowfast_audio_reduction_ratio=audio_ratio,
      conv_fusion_channel_ratio=m['fusion_conv_channel_ratio'],
      conv_kernel_size=(kernel, 1, 1), conv_kernel_size_a=(5, 1, 1),
      conv_stride=(alpha, 1, 1),
      conv_stride_a=tuple((max(1, n // slow_len), 1, 1) for n in lengths)).create_module
  return avsf.create_audio_visual_slowfast(
      slowfast_channel_reduction_ratio=(beta, audio_ratio), fusion_builder=fusion,
      stem_dim_outs=(width, width // beta, width // audio_ratio),
      head_pool_kernel_sizes=((slow_len, final, final), (spec['fast_frames'], final, final),
                              (t_audio // 8, 1, spec['mels'] // 8)), **common)


def pytorchvideo_settings(spec: Mapping[str, Any]) -> dict:
  """The spec with this project's settings that reproduce PyTorchVideo's network."""
  out = dict(spec)
  m = out['model'] = dict(spec['model'])
  m['fusion_kernel_size'] = 7 if m['alpha_f'] == 4 else 5
  if m['arch'] == 'avslowfast':
    m['audio_time_stride'] = 'conv_a'
    m['audio_lateral_stages'] = ['pool1', 'res2', 'res3', 'res4']
    m['audio_lateral_hidden_channels'] = 0
    m['audio_factorized_conv'] = 'parallel'
    m['audio_stride_res2'] = False
  return out


def forward_flops(model: nn.Module, spec: Mapping[str, Any], builder: str = 'minimal') -> int:
  """FLOPs (2 per multiply-add; convolutions and matrix products) of one clip's forward,
  counted by ``torch.utils.flop_counter`` on meta tensors: nothing is computed."""
  from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=import-outside-toplevel
  inputs = [torch.empty(s, device='meta') for s in input_shapes(spec, 1)]
  counter = FlopCounterMode(display=False)
  with counter, torch.no_grad():
    call(model, inputs, builder)
  return counter.get_total_flops()


def call(model: nn.Module, inputs: list, builder: str):
  """The model's logits on ``inputs`` (``[slow, fast(, audio)]``)."""
  if builder == 'minimal':
    return model(*inputs)
  import contextlib  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel
  # PyTorchVideo's audio fusion prints a shape on every call, and overwrites the list.
  with contextlib.redirect_stdout(io.StringIO()):
    return model(list(inputs))


def build(spec: Mapping[str, Any], builder: str = 'minimal', device=None) -> nn.Module:
  """The network of ``spec``: 'minimal' (this module) or 'pytorchvideo' (its builders)."""
  if builder not in ('minimal', 'pytorchvideo'):
    raise ValueError(f'builder {builder!r}: minimal or pytorchvideo')
  with torch.device(device or 'cpu'):
    return SlowFast(spec) if builder == 'minimal' else build_pytorchvideo(spec)
