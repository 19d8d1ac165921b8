r"""Start from public SlowFast weights: import PySlowFast / PyTorchVideo checkpoints.

Nobody released AVSlowFast weights, but Kinetics-trained SlowFast weights are
public (PySlowFast's model-zoo ``.pyth`` files; PyTorchVideo's hub
``slowfast_r50`` / ``slowfast_r101``, which are PySlowFast-trained weights
renamed). This tool converts one into our Flax variables, so that the visual
pathways of AVSlowFast (or the whole SlowFast baseline) start from it and only
the audio pathway, the audio laterals and, when the class count differs, the
head are newly initialised.

PyTorchVideo's ``create_audio_visual_slowfast`` (``--source
pytorchvideo_avslowfast``) imports whole, the Audio pathway and its laterals
included, into a model configured as that network (docs/models.md, "The
Audio pathway against PyTorchVideo's builder").

Usage::

  python -m avslowfast_jax.tools.import_weights --source pytorchvideo \
      --checkpoint SLOWFAST_8x8_R50.pyth \
      --config configs/kinetics.py:avslowfast_8x8_r50 --output /tmp/sf8x8_init \
      --config.model.fusion_kernel_size=7 --config.model.slow_frames=linspace

then train with ``--config.train.init_from=/tmp/sf8x8_init/variables`` (the
orbax item below; ``avslowfast_jax.checkpoints.load_pretrained`` reads
it as it is, and ``train.init_skip`` still decides what is not taken) and the
same model overrides: PySlowFast 8x8 R50 (= PyTorchVideo ``slowfast_r50``) has
a 7x1x1 Fast->Slow kernel (its 4x16 R50 and 8x8 R101: 5, our default), and
both code bases feed the Slow pathway ``torch.linspace(0, T - 1, T // alpha)``
of the Fast frames (``model.slow_frames=linspace``). The tool prints the
overrides at the end.

Loading uses ``torch.load(..., weights_only=True, map_location='cpu')``: a
downloaded pickle can run no code. torch is the ``[import]`` extra, imported
only inside :func:`load_torch_state_dict`.

Output directory layout (what ``train.init_from`` reads)
-------------------------------------------------------
``DIR/variables``
    An orbax checkpoint written by ``orbax.checkpoint.StandardCheckpointer``
    holding the PyTree ``{'params': ..., 'batch_stats': ...}`` exactly as
    ``build_model(config.model).init(...)`` returns it (fp32 numpy arrays;
    conv kernels ``[kt, kh, kw, cin, cout]``, dense kernels ``[in, out]``,
    BatchNorm ``params/.../{scale, bias}`` and ``batch_stats/.../{mean, var}``).
    Restore it with::

      tree = ocp.StandardCheckpointer().restore(os.path.abspath(DIR) + '/variables')
      # or, to get the right shardings/dtypes directly:
      tree = ocp.StandardCheckpointer().restore(path, target=abstract_variables)

``DIR/import_report.json``
    ``{'source', 'checkpoint', 'config_variant', 'counts': {...},
    'imported_by_module', 'initialised_by_module', 'warnings': [...],
    'imported': {variable path: source key}, 'initialised': [variable paths],
    'skipped': {source key: reason}}``. Variable paths are ``/``-joined,
    starting with the collection (``params/slow_stem/conv/kernel``,
    ``batch_stats/...``).

Name mapping
------------
Both sources are first parsed into one neutral layer naming (a
:attr:`SourceTensor.layer` such as ``slow/res3/block0/conv_a``), then mapped
onto the Flax tree by :func:`flax_path`. Layout conversion:

* Conv3d weight ``[cout, cin, kt, kh, kw]`` -> kernel ``[kt, kh, kw, cin, cout]``.
* Linear weight ``[out, in]`` -> kernel ``[in, out]``.
* BatchNorm ``weight, bias, running_mean, running_var`` ->
  ``params/{scale, bias}``, ``batch_stats/{mean, var}``;
  ``num_batches_tracked`` is skipped.

A source tensor with no place in the model, or whose converted shape differs
from the model's, is an error naming the key (the one exception: the
classifier head, which is newly initialised when its shape differs, e.g. a new
class count or the wider AVSlowFast head that also takes the audio features).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import re
import sys
import types
import warnings
from typing import Any, Callable, Iterable, Mapping

from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp

from avslowfast_jax import cli, model_builder, trees
from data_pipelines import errors, fs
from data_pipelines.errors import UserError

# Stage names in our config (``model.fast_to_slow_stages``) for the Fast->Slow
# lateral that follows each PySlowFast ``s{k}`` / PyTorchVideo ``blocks.{k-1}``.
_LATERAL_STAGE = {1: 'pool1', 2: 'res2', 3: 'res3', 4: 'res4'}
_STAGE = {2: 'res2', 3: 'res3', 4: 'res4', 5: 'res5'}
_PATHWAY = {0: 'slow', 1: 'fast'}
_BN_LEAF = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}


@contextlib.contextmanager
def torchvision_stand_in():
  """Lets ``pytorchvideo.models`` be imported where torchvision is not usable.

  PyTorchVideo's model package imports ``torchvision.ops.RoIAlign`` at import
  time, only for its detection head, which the SlowFast and AVSlowFast
  builders never build. torchvision wheels are pinned to one torch release, so
  it often cannot be installed next to the torch we have (or is installed but
  fails to load). Then, during the ``with`` body, a stand-in module whose
  ``RoIAlign`` cannot be constructed takes its place in ``sys.modules``; it is
  removed again afterwards.
  """
  try:
    importlib.import_module('torchvision.ops')
    usable = True
  except Exception:  # pylint: disable=broad-except  # absent, or built for another torch
    usable = False
  if usable:
    yield
    return

  class RoIAlign:
    def __init__(self, *args, **kwargs):
      raise RuntimeError('torchvision is not installed (RoIAlign stand-in)')

  saved = {k: sys.modules.get(k) for k in ('torchvision', 'torchvision.ops')}
  package, ops = types.ModuleType('torchvision'), types.ModuleType('torchvision.ops')
  ops.RoIAlign = RoIAlign
  package.ops = ops
  sys.modules.update({'torchvision': package, 'torchvision.ops': ops})
  try:
    yield
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v


class WeightImportError(UserError):
  """A checkpoint that cannot be imported into the configured model."""


@dataclasses.dataclass(frozen=True)
class SourceTensor:
  """One source tensor, renamed to the neutral layer naming and converted.

  Attributes:
    key: the key in the source state dict (for messages and the report).
    layer: neutral layer name, e.g. ``slow/res3/block0/conv_a``.
    kind: ``conv`` | ``bn`` | ``dense``.
    leaf: ``kernel`` | ``bias`` | ``scale`` | ``mean`` | ``var``.
    array: the tensor in our layout (fp32 numpy).
  """
  key: str
  layer: str
  kind: str
  leaf: str
  array: np.ndarray

  @property
  def collection(self) -> str:
    return 'batch_stats' if self.leaf in ('mean', 'var') else 'params'


# --------------------------------------------------------------------------
# Reading the checkpoint.

def load_torch_state_dict(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Reads a PyTorch checkpoint safely and returns ``(state_dict, extras)``.

  ``torch.load(weights_only=True)`` refuses pickles that would construct
  arbitrary objects. Accepted containers: a plain state dict, or a dict with
  the state dict under ``model_state`` (PySlowFast ``.pyth``), ``state_dict``
  or ``model``. A ``module.`` prefix (DistributedDataParallel) is removed.
  ``extras`` holds the other top-level entries that are plain values (e.g.
  PySlowFast's ``cfg`` YAML string and ``epoch``).
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top  # the optional [import] extra
  except ImportError as e:
    raise WeightImportError(
        'Importing PyTorch checkpoints needs torch: pip install "avslowfast-jax[import]" '
        '(a CPU build of torch is enough)') from e
  if not fs.isfile(path):
    raise WeightImportError(f'Checkpoint file {path!r} does not exist')
  expected = ('expected a file torch.save wrote, of tensors and plain Python values (a '
              'PySlowFast or PyTorchVideo .pyth / .pt file)')
  data = fs.read_bytes(path)  # from memory: torch.load cannot open gs:// paths
  # torch.save writes a zip archive (a pickle, protocol 2, before torch 1.6).
  if not data.startswith((b'PK\x03\x04', b'\x80')):
    raise WeightImportError(f'{path}: not a checkpoint (not a file torch.save writes); '
                            f'{expected}')
  try:
    # torch's warnings and messages (e.g. to load with weights_only=False) are advice for
    # torch.load's callers, not for this tool's users: one line of ours instead.
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      obj = torch.load(io.BytesIO(data), weights_only=True, map_location='cpu')
  except Exception as e:  # pylint: disable=broad-except  # torch raises several types
    raise WeightImportError(f'{path}: not a checkpoint this tool can read '
                            f'({_load_failure(e)}); {expected}') from None
  return unwrap_state_dict(obj)


def _load_failure(error: BaseException) -> str:
  """One line on why ``torch.load(weights_only=True)`` failed."""
  text = str(error)
  if 'WeightsUnpickler error' in text:
    detail = text.split('WeightsUnpickler error', 1)[1].lstrip(': \n').splitlines()
    return ('it holds Python objects other than tensors and plain values'
            + (f': {detail[0].strip()}' if detail and detail[0].strip() else ''))
  if isinstance(error, EOFError) or not text.strip():
    return 'the file ends early'
  return f'{type(error).__name__}: {text.strip().splitlines()[0][:200]}'


def unwrap_state_dict(obj: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Finds the model state dict inside a loaded checkpoint object (see above)."""
  if not isinstance(obj, Mapping):
    raise WeightImportError(f'Checkpoint holds a {type(obj).__name__}, expected a dict')
  extras = {}
  state = obj
  for name in ('model_state', 'state_dict', 'model'):
    if name in obj and isinstance(obj[name], Mapping):
      state = obj[name]
      extras = {k: v for k, v in obj.items()
                if k != name and isinstance(v, (str, int, float, bool))}
      break
  out = {}
  for key, value in state.items():
    if not hasattr(value, 'detach'):
      raise WeightImportError(f'State dict entry {key!r} is a {type(value).__name__}, '
                              'not a tensor')
    if key.startswith('module.'):
      key = key[len('module.'):]
    out[key] = value.detach().cpu().float().numpy() if value.is_floating_point() \
        else value.detach().cpu().numpy()
  return out, extras


# --------------------------------------------------------------------------
# Layout conversion.

def convert_tensor(kind: str, array: np.ndarray, key: str) -> np.ndarray:
  """PyTorch layout -> ours for one tensor of a ``conv``/``audio_conv``/``temporal_conv``/
  ``dense``/``bn`` layer.

  PyTorchVideo's audio pathway is 3-D over ``(time, 1, frequency)`` and its
  audio laterals over ``(time, 1, 1)``: ``audio_conv`` drops the unit height
  (our 2-D ``(time, frequency)`` kernel), ``temporal_conv`` height and width
  (our 1-D temporal kernel).
  """
  array = np.asarray(array, np.float32)
  if kind == 'conv' and array.ndim == 5:
    # [cout, cin, kt, kh, kw] -> [kt, kh, kw, cin, cout]
    return np.ascontiguousarray(array.transpose(2, 3, 4, 1, 0))
  if kind == 'audio_conv' and array.ndim == 5 and array.shape[3] == 1:
    # [cout, cin, kt, 1, kf] -> [kt, kf, cin, cout]
    return np.ascontiguousarray(array[:, :, :, 0, :].transpose(2, 3, 1, 0))
  if kind == 'temporal_conv' and array.ndim == 5 and array.shape[3:] == (1, 1):
    # [cout, cin, kt, 1, 1] -> [kt, cin, cout]
    return np.ascontiguousarray(array[:, :, :, 0, 0].transpose(2, 1, 0))
  if kind == 'dense' and array.ndim == 2:
    return np.ascontiguousarray(array.T)
  if array.ndim == 1:  # BN vectors, conv and dense biases
    return array
  raise WeightImportError(f'{key}: unexpected {array.ndim}-D tensor of shape '
                          f'{tuple(array.shape)} for a {kind} layer')


def _tensor(key: str, layer: str, kind: str, torch_leaf: str, array) -> SourceTensor:
  if kind == 'bn':
    leaf = _BN_LEAF[torch_leaf]
  else:
    leaf = {'weight': 'kernel', 'bias': 'bias'}[torch_leaf]
  return SourceTensor(key, layer, kind, leaf, convert_tensor(kind, array, key))


# --------------------------------------------------------------------------
# Source naming -> neutral layer naming.
#
# Each table row: (regex on the source key, function(match) -> (layer, kind)).
# The regex ends at the module; the torch leaf name follows after a dot.

_BN_LEAVES = r'(weight|bias|running_mean|running_var)'

_PYTORCHVIDEO_RULES = [
    # blocks.0 holds both stems and the lateral after pool1.
    (r'blocks\.0\.multipathway_blocks\.(\d)\.conv\.(weight)',
     lambda m: (f'{_pw(m, 1)}/stem/conv', 'conv')),
    (rf'blocks\.0\.multipathway_blocks\.(\d)\.norm\.{_BN_LEAVES}',
     lambda m: (f'{_pw(m, 1)}/stem/bn', 'bn')),
    # blocks.k (k = 1..4) hold res(k+1) of both pathways.
    (r'blocks\.([1-4])\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch1_conv\.(weight)',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1]) + 1]}/block{m[3]}/shortcut_conv', 'conv')),
    (rf'blocks\.([1-4])\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch1_norm\.{_BN_LEAVES}',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1]) + 1]}/block{m[3]}/shortcut_bn', 'bn')),
    (r'blocks\.([1-4])\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.conv_([abc])'
     r'\.(weight)',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1]) + 1]}/block{m[3]}/conv_{m[4]}', 'conv')),
    (rf'blocks\.([1-4])\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.norm_([abc])'
     rf'\.{_BN_LEAVES}',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1]) + 1]}/block{m[3]}/bn_{m[4]}', 'bn')),
    # Fast->Slow laterals after the stem (pool1), res2, res3, res4.
    (r'blocks\.([0-3])\.multipathway_fusion\.conv_fast_to_slow\.(weight)',
     lambda m: (f'fast_to_slow/{_LATERAL_STAGE[int(m[1]) + 1]}/conv', 'conv')),
    (rf'blocks\.([0-3])\.multipathway_fusion\.norm\.{_BN_LEAVES}',
     lambda m: (f'fast_to_slow/{_LATERAL_STAGE[int(m[1]) + 1]}/bn', 'bn')),
    # The classifier (ResNetBasicHead.proj) after the PoolConcatPathway block.
    (r'blocks\.\d+\.proj\.(weight|bias)', lambda m: ('head/projection', 'dense')),
]

_PYSLOWFAST_RULES = [
    (r's1\.pathway(\d)_stem\.conv\.(weight)', lambda m: (f'{_pw(m, 1)}/stem/conv', 'conv')),
    (rf's1\.pathway(\d)_stem\.bn\.{_BN_LEAVES}', lambda m: (f'{_pw(m, 1)}/stem/bn', 'bn')),
    (r's([2-5])\.pathway(\d)_res(\d+)\.branch1\.(weight)',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1])]}/block{m[3]}/shortcut_conv', 'conv')),
    (rf's([2-5])\.pathway(\d)_res(\d+)\.branch1_bn\.{_BN_LEAVES}',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1])]}/block{m[3]}/shortcut_bn', 'bn')),
    (r's([2-5])\.pathway(\d)_res(\d+)\.branch2\.([abc])\.(weight)',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1])]}/block{m[3]}/conv_{m[4]}', 'conv')),
    (rf's([2-5])\.pathway(\d)_res(\d+)\.branch2\.([abc])_bn\.{_BN_LEAVES}',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1])]}/block{m[3]}/bn_{m[4]}', 'bn')),
    # Non-local blocks (R101+NL models): 1x1x1 convs with biases and a BN,
    # named ``norm`` in recent PySlowFast and ``bn`` in older releases.
    (r's([2-5])\.pathway(\d)_nonlocal(\d+)\.conv_(theta|phi|g|out)\.(weight|bias)',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1])]}/nonlocal{m[3]}/{m[4]}', 'conv')),
    (rf's([2-5])\.pathway(\d)_nonlocal(\d+)\.(?:norm|bn)\.{_BN_LEAVES}',
     lambda m: (f'{_pw(m, 2)}/{_STAGE[int(m[1])]}/nonlocal{m[3]}/bn', 'bn')),
    (r's([1-4])_fuse\.conv_f2s\.(weight)',
     lambda m: (f'fast_to_slow/{_LATERAL_STAGE[int(m[1])]}/conv', 'conv')),
    (rf's([1-4])_fuse\.bn\.{_BN_LEAVES}',
     lambda m: (f'fast_to_slow/{_LATERAL_STAGE[int(m[1])]}/bn', 'bn')),
    (r'head\.projection\.(weight|bias)', lambda m: ('head/projection', 'dense')),
]

# PyTorchVideo's ``create_audio_visual_slowfast``: pathway 2 is the Audio
# pathway (stem ``conv.convs.0`` = 9x1 time, ``.1`` = 1x9 frequency; in
# res2/res3 ``conv_b.0`` = the 1x3 frequency conv, ``conv_b.1`` = the 3x1 time
# conv, side by side), and each fusion block holds the Fast->Slow lateral
# (``block_fast_to_slow``: conv, BN) and the audio lateral
# (``block_audio_to_fastslow``: conv, BN, ReLU, conv, BN).
_AUDIO_B = {'0': 'freq', '1': 'time'}
_PYTORCHVIDEO_AVSLOWFAST_RULES = [
    (r'blocks\.0\.multipathway_blocks\.2\.conv\.convs\.([01])\.(weight)',
     lambda m: (f'audio/stem/conv_{("time", "freq")[int(m[1])]}', 'audio_conv')),
    (rf'blocks\.0\.multipathway_blocks\.2\.norm\.{_BN_LEAVES}', lambda m: ('audio/stem/bn', 'bn')),
    (r'blocks\.([1-4])\.multipathway_blocks\.2\.res_blocks\.(\d+)\.branch1_conv\.(weight)',
     lambda m: (f'audio/{_STAGE[int(m[1]) + 1]}/block{m[2]}/shortcut_conv', 'audio_conv')),
    (rf'blocks\.([1-4])\.multipathway_blocks\.2\.res_blocks\.(\d+)\.branch1_norm\.{_BN_LEAVES}',
     lambda m: (f'audio/{_STAGE[int(m[1]) + 1]}/block{m[2]}/shortcut_bn', 'bn')),
    (r'blocks\.([1-4])\.multipathway_blocks\.2\.res_blocks\.(\d+)\.branch2\.conv_([abc])'
     r'\.(weight)',
     lambda m: (f'audio/{_STAGE[int(m[1]) + 1]}/block{m[2]}/conv_{m[3]}', 'audio_conv')),
    (rf'blocks\.([1-4])\.multipathway_blocks\.2\.res_blocks\.(\d+)\.branch2\.norm_([abc])'
     rf'\.{_BN_LEAVES}',
     lambda m: (f'audio/{_STAGE[int(m[1]) + 1]}/block{m[2]}/bn_{m[3]}', 'bn')),
    (r'blocks\.([1-4])\.multipathway_blocks\.2\.res_blocks\.(\d+)\.branch2\.conv_b\.([01])'
     r'\.(weight)',
     lambda m: (f'audio/{_STAGE[int(m[1]) + 1]}/block{m[2]}/conv_b_{_AUDIO_B[m[3]]}',
                'audio_conv')),
    (rf'blocks\.([1-4])\.multipathway_blocks\.2\.res_blocks\.(\d+)\.branch2\.norm_b\.([01])'
     rf'\.{_BN_LEAVES}',
     lambda m: (f'audio/{_STAGE[int(m[1]) + 1]}/block{m[2]}/bn_b_{_AUDIO_B[m[3]]}', 'bn')),
    (r'blocks\.([0-3])\.multipathway_fusion\.block_fast_to_slow\.0\.(weight)',
     lambda m: (f'fast_to_slow/{_LATERAL_STAGE[int(m[1]) + 1]}/conv', 'conv')),
    (rf'blocks\.([0-3])\.multipathway_fusion\.block_fast_to_slow\.1\.{_BN_LEAVES}',
     lambda m: (f'fast_to_slow/{_LATERAL_STAGE[int(m[1]) + 1]}/bn', 'bn')),
    (r'blocks\.([0-3])\.multipathway_fusion\.block_audio_to_fastslow\.([03])\.(weight)',
     lambda m: (f'audio_to_visual/{_LATERAL_STAGE[int(m[1]) + 1]}/conv_{"ab"[int(m[2]) // 3]}',
                'temporal_conv')),
    (rf'blocks\.([0-3])\.multipathway_fusion\.block_audio_to_fastslow\.([14])\.{_BN_LEAVES}',
     lambda m: (f'audio_to_visual/{_LATERAL_STAGE[int(m[1]) + 1]}/bn_{"ab"[int(m[2]) // 4]}',
                'bn')),
] + [rule for rule in _PYTORCHVIDEO_RULES if 'multipathway_fusion' not in rule[0]]

SOURCES = {'pytorchvideo': _PYTORCHVIDEO_RULES, 'pyslowfast': _PYSLOWFAST_RULES,
           'pytorchvideo_avslowfast': _PYTORCHVIDEO_AVSLOWFAST_RULES}


def _pw(match: re.Match, group: int) -> str:
  index = int(match[group])
  if index not in _PATHWAY:
    # Pathway 2 is the audio pathway of audio-visual PySlowFast forks; its
    # layout differs from ours, so it is not imported.
    raise _UnknownKey(f'pathway index {index} (only 0 = Slow and 1 = Fast are importable)')
  return _PATHWAY[index]


class _UnknownKey(Exception):
  pass


def parse_state_dict(state: Mapping[str, np.ndarray], source: str
                     ) -> tuple[list[SourceTensor], list[tuple[str, str]]]:
  """Renames and converts a source state dict.

  Returns ``(tensors, skipped)``; ``skipped`` lists ``(key, reason)`` for the
  entries deliberately left out (BN ``num_batches_tracked`` counters).
  Raises :class:`WeightImportError` naming every key that matches no rule.
  """
  if source not in SOURCES:
    raise WeightImportError(f'Unknown --source {source!r}; expected one of {sorted(SOURCES)}')
  rules = [(re.compile(pattern + r'$'), fn) for pattern, fn in SOURCES[source]]
  tensors, skipped, unknown = [], [], []
  for key, array in state.items():
    if key.endswith('.num_batches_tracked'):
      skipped.append((key, 'BatchNorm step counter (not used)'))
      continue
    for pattern, fn in rules:
      m = pattern.match(key)
      if m:
        try:
          layer, kind = fn(m)
        except _UnknownKey as e:
          unknown.append(f'{key} ({e})')
          break
        tensors.append(_tensor(key, layer, kind, m[m.lastindex], array))
        break
    else:
      unknown.append(key)
  if unknown:
    shown = '\n  '.join(unknown[:20])
    more = f'\n  ... and {len(unknown) - 20} more' if len(unknown) > 20 else ''
    hint = ''
    other = [s for s in SOURCES if s != source]
    if other and any(re.compile(p + r'$').match(unknown[0].split(' ')[0])
                     for p, _ in SOURCES[other[0]]):
      hint = f'\n(These look like --source {other[0]} names.)'
    raise WeightImportError(
        f'{len(unknown)} unexpected key(s) in the {source} checkpoint, with no place in a '
        f'SlowFast model:\n  {shown}{more}{hint}')
  return tensors, skipped


# --------------------------------------------------------------------------
# Neutral layer naming -> our Flax variable tree.
#
# Our model (avslowfast_jax/models) names the visual modules flat in the top
# module: ``{pathway}_stem``, ``{pathway}_{stage}_block{i}`` (submodules
# conv_a, bn_a, conv_b, bn_b, conv_c, bn_c, shortcut_conv, shortcut_bn),
# ``{pathway}_{stage}_nonlocal{i}`` (theta, phi, g, out, bn; after block i, as
# PySlowFast), ``fast_to_slow_{stage}`` (conv, bn) and ``head`` (classifier).

_FLAX_NAMING = [
    (r'(slow|fast)/stem/(conv|bn)', lambda m: (f'{m[1]}_stem', m[2])),
    (r'(slow|fast)/(res\d)/block(\d+)/(\w+)', lambda m: (f'{m[1]}_{m[2]}_block{m[3]}', m[4])),
    (r'(slow|fast)/(res\d)/nonlocal(\d+)/(\w+)',
     lambda m: (f'{m[1]}_{m[2]}_nonlocal{m[3]}', m[4])),
    (r'fast_to_slow/(\w+)/(conv|bn)', lambda m: (f'fast_to_slow_{m[1]}', m[2])),
    (r'audio/stem/(\w+)', lambda m: ('audio', 'stem', m[1])),
    (r'audio/(res\d)/block(\d+)/(\w+)', lambda m: ('audio', f'{m[1]}_block{m[2]}', m[3])),
    (r'audio_to_visual/(\w+)/(\w+)', lambda m: ('audio', f'to_visual_{m[1]}', m[2])),
    (r'head/projection', lambda m: ('head', 'classifier')),
]
_FLAX_NAMING = [(re.compile(p + '$'), fn) for p, fn in _FLAX_NAMING]

# Top-level modules that a SlowFast checkpoint must fill completely: the
# stems, residual blocks and Fast->Slow laterals. (Non-local blocks may be new:
# the R101+NL models start from non-NL Kinetics weights in PySlowFast too.)
_REQUIRED_MODULE = re.compile(r'(slow|fast)_stem|(slow|fast)_res\d_block\d+|fast_to_slow_\w+')


def flax_path(layer: str) -> tuple[str, ...]:
  """Module path in our variable tree of a neutral layer name (no collection, no leaf)."""
  for pattern, fn in _FLAX_NAMING:
    m = pattern.match(layer)
    if m:
      return fn(m)
  raise WeightImportError(f'No Flax module for layer {layer!r}')  # a bug in the tables


def variable_path(t: 'SourceTensor') -> str:
  """``collection/module/.../leaf``: where a source tensor goes in our variable tree."""
  return '/'.join((t.collection, *flax_path(t.layer), t.leaf))


def _mismatch_hint(t: SourceTensor, want: tuple, config) -> str:
  """Which config field most likely explains a shape mismatch."""
  got = t.array.shape
  if (t.layer.startswith('fast_to_slow/') and t.leaf == 'kernel' and len(want) == 5
      and got[0] != want[0]):
    return (f' The checkpoint\'s Fast->Slow kernel is {got[0]}x1x1: set '
            f'--config.model.fusion_kernel_size={got[0]} (PySlowFast 4x16 R50 and '
            '8x8 R101 use 5; PySlowFast 8x8 R50 = PyTorchVideo slowfast_r50 uses 7).')
  if '/res' in t.layer and t.leaf == 'kernel' and len(got) == len(want) == 5 \
      and got[3] != want[3]:
    return (' Input channels differ: the Fast->Slow laterals before this stage do not match '
            f'(model.fast_to_slow_stages={tuple(config.model.fast_to_slow_stages)!r}, '
            f'fusion_conv_channel_ratio={config.model.fusion_conv_channel_ratio}, '
            f'beta_f={config.model.beta_f}) or the width differs (model.width='
            f'{config.model.width}).')
  return (f' Check model.depth/width/beta_f against the checkpoint '
          f'(model.depth={config.model.depth}, width={config.model.width}).')


def _missing_hint(t: SourceTensor, config) -> str:
  if t.layer.startswith('fast_to_slow/'):
    stage = t.layer.split('/')[1]
    return (f" The checkpoint has a Fast->Slow lateral after {stage}: add '{stage}' to "
            f'model.fast_to_slow_stages (now {tuple(config.model.fast_to_slow_stages)!r}); '
            "SlowFast checkpoints have ('pool1', 'res2', 'res3', 'res4').")
  if t.layer.startswith('audio_to_visual/'):
    return (f" The checkpoint has an audio lateral after {t.layer.split('/')[1]}: "
            f'model.audio_lateral_stages is {tuple(config.model.audio_lateral_stages)!r}; '
            "PyTorchVideo's AVSlowFast has ('pool1', 'res2', 'res3', 'res4').")
  if '/nonlocal' in t.layer:
    return (f' The checkpoint has a Non-local block there: set model.nonlocal_stages / '
            f'nonlocal_every to match (now {tuple(config.model.nonlocal_stages)!r}, '
            f'{config.model.nonlocal_every}).')
  if '/block' in t.layer:
    return (f' The checkpoint has more blocks than the model: check model.depth '
            f'(now {config.model.depth}) / model.stage_blocks.')
  if t.layer.startswith('head/'):
    return f' The model\'s task is {config.task!r}.'
  return ''


@dataclasses.dataclass
class ImportResult:
  """What :func:`import_variables` produced.

  Attributes:
    variables: ``{'params': ..., 'batch_stats': ...}`` nested dicts of numpy arrays.
    imported: ``{variable path: source key}``.
    initialised: variable paths newly initialised by the model's initialisers.
    skipped: ``[(source key, reason)]`` for source tensors not used.
    warnings: human-readable notes (e.g. the checkpoint's alpha differs).
  """
  variables: dict
  imported: dict
  initialised: list
  skipped: list
  warnings: list


def import_variables(tensors: list[SourceTensor], abstract_variables: Mapping, config,
                     init_variables: Callable[[list], Mapping] | None = None, *,
                     new_head: bool = False) -> ImportResult:
  """Places converted source tensors into our model's variable tree.

  Args:
    tensors: output of :func:`parse_state_dict`.
    abstract_variables: the model's variables or their shapes
      (``jax.eval_shape`` of ``model.init``); only ``params`` and
      ``batch_stats`` are used.
    config: the full config (for hints in error messages).
    init_variables: given a list of variable paths (tuples starting with the
      collection), returns ``{path: fresh value}``; called only when something
      is not imported (audio pathway, new head, Non-local blocks).
    new_head: newly initialise the classifier even when its shape matches.

  Raises:
    WeightImportError: a source tensor has no place in the model or a shape
      differs (naming the key), or a visual stem/block/lateral variable of the
      model is absent from the checkpoint.
  """
  target = trees.flatten(
      {k: abstract_variables[k] for k in ('params', 'batch_stats') if k in abstract_variables})
  values, imported, skipped, errors = {}, {}, [], []

  # The head is all-or-nothing: a new class count changes the kernel and the
  # bias, the wider AVSlowFast head (audio features in pool5) only the kernel.
  head = [t for t in tensors if t.layer.startswith('head/')]
  head_reason = 'newly initialised on request (--new_head)' if new_head else None
  for t in head:
    if head_reason:
      break
    path = variable_path(t)
    if path not in target:
      head_reason = f'the model has no {path} (task {config.task!r})'
    elif tuple(target[path].shape) != t.array.shape:
      head_reason = (f'shape differs: checkpoint {tuple(t.array.shape)} vs model '
                     f'{tuple(target[path].shape)} at {path}')
  for t in tensors:
    path = variable_path(t)
    if t.layer.startswith('head/') and head_reason:
      skipped.append((t.key, f'classifier not imported: {head_reason}'))
    elif path not in target:
      errors.append(f'unexpected key {t.key!r}: the model has no {path}.'
                    f'{_missing_hint(t, config)}')
    elif tuple(target[path].shape) != t.array.shape:
      want = tuple(target[path].shape)
      errors.append(f'shape mismatch for {t.key!r} -> {path}: checkpoint '
                    f'{tuple(t.array.shape)} (converted to our layout) vs model {want}.'
                    f'{_mismatch_hint(t, want, config)}')
    elif path in values:
      errors.append(f'{t.key!r} and {imported[path]!r} both map to {path}')
    else:
      values[path] = t.array
      imported[path] = t.key
  if errors:
    raise WeightImportError(f'{len(errors)} problem(s) importing the checkpoint:\n  '
                            + '\n  '.join(errors))

  missing = [p for p in target
             if p not in values and _REQUIRED_MODULE.fullmatch(p.split('/')[1])]
  if missing:
    shown = '\n  '.join(missing[:20])
    raise WeightImportError(
        f'{len(missing)} visual variable(s) of the model are not in the checkpoint:\n  {shown}'
        f'\nThe checkpoint is probably a different depth or lateral placement '
        f'(model.depth={config.model.depth}, '
        f'fast_to_slow_stages={tuple(config.model.fast_to_slow_stages)!r}).')

  initialised = [p for p in target if p not in values]
  if initialised:
    if init_variables is None:
      raise WeightImportError('Variables need initialising but no initialiser was given: '
                              + ', '.join(initialised[:5]))
    fresh = init_variables(initialised)
    for p in initialised:
      values[p] = np.asarray(fresh[p], np.float32)
  ordered = {p: values[p] for p in target}
  return ImportResult(variables=trees.unflatten(ordered),
                      imported=dict(imported),
                      initialised=list(initialised),
                      skipped=skipped, warnings=[])


# --------------------------------------------------------------------------
# Our model: shapes, fresh initialisation.

def model_variables(config, only: list | None = None):
  """The variables of the config's model (with its task's head), seeded with ``config.seed``.

  Without ``only``: their shapes (``jax.eval_shape``; nothing is computed or
  compiled). With ``only`` (a list of variable paths): ``{path: value}`` of
  just those variables. Returning only them lets XLA drop the rest of
  ``init`` (the forward pass and every other initialiser), which cuts the
  compile time from tens of seconds to about one on CPU. Parameter shapes do
  not depend on the frame size, so a 64x64 one keeps ``init`` cheap.
  """
  model, _ = model_builder.build(config)
  inputs = {k: np.zeros(v.shape, v.dtype)
            for k, v in model_builder.input_specs(config, 1, image_size=64).items()}
  init = lambda key: model.init({'params': key, 'dropout': key}, inputs, train=False)
  key = jax.random.key(config.seed)
  if only is None:
    return jax.eval_shape(init, key)
  only = list(only)

  def select(key):
    flat = trees.flatten(init(key))
    return [flat[p] for p in only]

  return dict(zip(only, (np.asarray(v, np.float32) for v in jax.device_get(jax.jit(select)(key)))))


# --------------------------------------------------------------------------
# PySlowFast's saved config (a YAML string under ``cfg``): cross-checks that
# tensor shapes cannot catch (the lateral's temporal stride is alpha).

def _cfg_value(cfg_text: str, section: str, name: str) -> str | None:
  """The value of ``section.name`` in a YAML dump, without a YAML parser."""
  m = re.search(rf'^{section}:\s*\n((?:[ \t]+.*\n?)*)', cfg_text, re.M)
  if not m:
    return None
  v = re.search(rf'^[ \t]+{name}:[ \t]*(\S+)', m[1], re.M)
  return v[1] if v else None


def check_source_config(extras: Mapping[str, Any], config) -> list[str]:
  """Warnings where a PySlowFast checkpoint's own ``cfg`` disagrees with ours."""
  cfg = extras.get('cfg')
  if not isinstance(cfg, str):
    return []
  warnings = []
  checks = [('SLOWFAST', 'ALPHA', config.model.alpha_f, 'model.alpha_f'),
            ('SLOWFAST', 'FUSION_KERNEL_SZ', config.model.fusion_kernel_size,
             'model.fusion_kernel_size'),
            ('RESNET', 'DEPTH', config.model.depth, 'model.depth')]
  for section, name, ours, field in checks:
    value = _cfg_value(cfg, section, name)
    if value is not None and value.isdigit() and int(value) != int(ours):
      warnings.append(f'checkpoint cfg {section}.{name}={value} but {field}={ours}: the '
                      'weights were trained for a different network')
  return warnings


# --------------------------------------------------------------------------
# The whole import, and the output directory.

def import_checkpoint(state: Mapping[str, np.ndarray], source: str, config, *,
                      extras: Mapping[str, Any] | None = None, new_head: bool = False,
                      abstract_variables: Mapping | None = None) -> ImportResult:
  """Source state dict -> our variables (see :func:`import_variables`).

  ``abstract_variables`` defaults to the shapes of ``build_model(config.model)``;
  fresh variables are only computed when something is newly initialised.
  """
  if config.model.arch == 'audio':
    raise WeightImportError('model.arch is "audio": an Audio-only model has no visual '
                            'pathways to take SlowFast weights')
  tensors, skipped = parse_state_dict(state, source)
  if abstract_variables is None:
    abstract_variables = model_variables(config)
  result = import_variables(tensors, abstract_variables, config,
                            lambda paths: model_variables(config, only=paths),
                            new_head=new_head)
  result.skipped = skipped + result.skipped
  result.warnings = check_source_config(extras or {}, config) + result.warnings
  return result


def _count(flat_paths: Iterable[str], variables: Mapping) -> int:
  flat = trees.flatten(variables)
  return int(sum(np.size(flat[p]) for p in flat_paths))


def _by_module(paths: Iterable[str]) -> dict[str, int]:
  """Counts per top-level module (``params/audio/...`` -> ``audio``)."""
  out = {}
  for p in paths:
    module = p.split('/')[1]
    module = re.sub(r'_block\d+$|_nonlocal\d+$', '', module)
    out[module] = out.get(module, 0) + 1
  return out


def build_report(result: ImportResult, *, source: str, checkpoint: str, variant: str) -> dict:
  """The ``import_report.json`` content."""
  return {
      'source': source,
      'checkpoint': fs.abspath(checkpoint) if checkpoint else None,
      'config_variant': variant,
      'counts': {
          'imported_arrays': len(result.imported),
          'imported_values': _count(result.imported, result.variables),
          'initialised_arrays': len(result.initialised),
          'initialised_values': _count(result.initialised, result.variables),
          'skipped_source_keys': len(result.skipped),
      },
      'imported_by_module': _by_module(result.imported),
      'initialised_by_module': _by_module(result.initialised),
      'warnings': result.warnings,
      'imported': result.imported,
      'initialised': result.initialised,
      'skipped': {key: reason for key, reason in result.skipped},
  }


def summary_lines(report: dict) -> list[str]:
  """A short human-readable summary of a report."""
  c = report['counts']
  lines = [f"imported {c['imported_arrays']} arrays ({c['imported_values'] / 1e6:.2f}M values) "
           f"from {report['source']}: "
           + ', '.join(f'{m} ({n})' for m, n in report['imported_by_module'].items()),
           f"newly initialised {c['initialised_arrays']} arrays "
           f"({c['initialised_values'] / 1e6:.2f}M values): "
           + (', '.join(f'{m} ({n})' for m, n in report['initialised_by_module'].items())
              or 'none')]
  reasons = {}
  for reason in report['skipped'].values():
    reasons[reason] = reasons.get(reason, 0) + 1
  for reason, n in reasons.items():
    lines.append(f'skipped {n} source tensor(s): {reason}')
  lines += [f'WARNING: {w}' for w in report['warnings']]
  return lines


def save_output(output_dir: str, variables: Mapping, report: dict, overwrite: bool = False) -> str:
  """Writes ``output_dir/variables`` (orbax) and ``output_dir/import_report.json``.

  Returns the path of the orbax item (what ``train.init_from`` points at).
  """
  output_dir = fs.abspath(output_dir)
  item = fs.join(output_dir, 'variables')
  if fs.exists(item) and not overwrite:
    raise WeightImportError(f'{item} exists; pass --overwrite to replace it')
  fs.makedirs(output_dir)
  tree = {k: variables[k] for k in ('params', 'batch_stats') if k in variables}
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(item, tree, force=overwrite)
  checkpointer.wait_until_finished()
  fs.write_text(fs.join(output_dir, 'import_report.json'), json.dumps(report, indent=1))
  return item


def load_output(output_dir: str) -> dict:
  """Reads back ``{'params', 'batch_stats'}`` written by :func:`save_output` (numpy)."""
  item = fs.join(fs.abspath(output_dir), 'variables')
  return jax.device_get(ocp.StandardCheckpointer().restore(item))


# --------------------------------------------------------------------------
# CLI.

def main(argv: list[str] | None = None) -> int:
  """Command-line entry point; see the module docstring."""
  fv = flags.FlagValues()
  flags.DEFINE_enum('source', None, sorted(SOURCES), 'Checkpoint naming scheme.', flag_values=fv)
  flags.DEFINE_string('checkpoint', None, 'PyTorch checkpoint file (.pyth / .pt).',
                      flag_values=fv)
  flags.DEFINE_string('output', None, 'Output directory.', flag_values=fv)
  flags.DEFINE_bool('new_head', False, 'Newly initialise the classifier even if it fits.',
                    flag_values=fv)
  flags.DEFINE_bool('overwrite', False, 'Replace an existing output.', flag_values=fv)
  argv = list(sys.argv if argv is None else argv)
  # sys_argv: the overrides (--config.x=y) are read from these arguments.
  config_flags.DEFINE_config_file('config', None, 'Config file[:variant].', flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  if any(a in ('-h', '--help', '--helpshort', '--helpfull') for a in argv[1:]):
    print('usage: python -m avslowfast_jax.tools.import_weights --source pyslowfast|pytorchvideo '
          '--checkpoint FILE --config FILE[:VARIANT] --output DIR [--new_head] [--overwrite] '
          '[--config.x=y ...]\n')
    print(fv.get_help())
    return 0
  cli.parse_flags(argv, fv)
  for name in ('source', 'checkpoint', 'output', 'config'):
    if fv[name].value is None:
      raise UserError(f'--{name} is required')
  config = fv.config
  variant = config_flags.get_config_filename(fv['config'])
  state, extras = load_torch_state_dict(fv.checkpoint)
  result = import_checkpoint(state, fv.source, config, extras=extras, new_head=fv.new_head)
  report = build_report(result, source=fv.source, checkpoint=fv.checkpoint, variant=variant)
  item = save_output(fv.output, result.variables, report, overwrite=fv.overwrite)
  for line in summary_lines(report):
    print(line)
  print(f'wrote {item} and {fs.join(fs.dirname(item), "import_report.json")}')
  print(f'train or evaluate from it with --config.train.init_from={item} '
        + ' '.join(model_overrides(config, variant)))
  return 0


def model_overrides(config, variant: str) -> list[str]:
  """The ``--config.model.*`` flags every command on the imported model needs: the model
  fields this import set away from the config file's defaults (e.g. PySlowFast 8x8 R50's
  ``fusion_kernel_size=7``), and ``slow_frames=linspace``, the Slow frames PySlowFast and
  PyTorchVideo train and evaluate with (``torch.linspace`` over the Fast frames)."""
  try:
    defaults = cli.load_config_file(variant).model
  except Exception:  # pylint: disable=broad-except (a hint only)
    defaults = {}
  flags_out = []
  for key, value in config.model.items():
    if key in defaults and defaults[key] != value and key != 'slow_frames':
      text = repr(tuple(value)) if isinstance(value, (tuple, list)) else str(value)
      flags_out.append(f'--config.model.{key}="{text}"' if '(' in text else
                       f'--config.model.{key}={text}')
  return flags_out + ['--config.model.slow_frames=linspace']


if __name__ == '__main__':
  errors.run(main)
