"""Self-contained inference export, and its loader (``--mode export`` writes one).

An export directory holds::

  weights.npz                params and BN statistics ('params/...', 'batch_stats/...')
  inference_cpu.jaxexport    serialized ``jax.export`` of ``f(variables, inputs) ->
                             {'logits', 'scores'}`` for the CPU backend (its CPU forms)
  inference_accelerators.jaxexport
                             the same for CUDA, ROCm and TPU, traced with the native
                             implementation (models/ops.py), lowered on this machine
  signature.json             inputs (names, shapes with a symbolic batch), task, which
                             artifact serves which platform
  config.json                the full experiment config
  label_map.json             the class names of the scores (per output for several)

:func:`load` needs only jax and numpy: neither the model code nor the config
system.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from avslowfast_jax import trees
from data_pipelines.errors import UserError

# Artifact file -> the platforms it is lowered for, and the model.conv_impl it is
# traced with (None: the config's own, as the CPU backend resolves it).
ARTIFACTS = {
    'inference_cpu.jaxexport': (('cpu',), None),
    'inference_accelerators.jaxexport': (('cuda', 'rocm', 'tpu'), 'native'),
}


def export_inference(make_predict: Callable[[Optional[str]], Callable], variables,
                     input_shapes: Mapping[str, Sequence[int]], out_dir: str, *,
                     task: str, class_names=None, config_json: Optional[str] = None,
                     cpu_conv_impl: str = 'cpu',
                     extra_signature: Optional[Mapping[str, Any]] = None) -> str:
  """Writes the export directory; returns its path.

  ``make_predict(conv_impl)`` returns a pure ``predict(variables, inputs) ->
  {'logits', 'scores'}`` whose model computes with ``conv_impl``
  (``cpu_conv_impl`` for the CPU artifact, ``native`` for the accelerators');
  ``input_shapes`` maps input names
  to per-example shapes (without the batch dimension). Each artifact of
  :data:`ARTIFACTS` is traced and lowered here, on any machine (lowering
  needs no device of the target platform); one that fails to lower is left
  out with a message, and the signature lists what was written.
  """
  _makedirs(out_dir)
  variables = jax.device_get({k: variables[k] for k in ('params', 'batch_stats') if k in variables})
  variables = jax.tree.map(np.asarray, variables)
  batch = jax.export.symbolic_shape('batch')[0]
  var_specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables)
  in_specs = {k: jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
              for k, shape in input_shapes.items()}
  served = {}
  for filename, (platforms, impl) in ARTIFACTS.items():
    impl = impl or cpu_conv_impl
    try:
      exported = jax.export.export(jax.jit(make_predict(impl)), platforms=platforms)(
          var_specs, in_specs)
    except Exception as e:  # pylint: disable=broad-except
      print(f'Not exporting {filename} for {platforms}: {type(e).__name__}: {e}')
      continue
    with _open(_join(out_dir, filename), 'wb') as f:
      f.write(exported.serialize())
    served.update({platform: filename for platform in exported.platforms})
  if not served:
    raise RuntimeError(f'No inference artifact could be exported to {out_dir}')
  weights = io.BytesIO()  # zipfile needs tell(), which a gs:// upload does not have
  np.savez(weights, **trees.flatten(variables))
  with _open(_join(out_dir, 'weights.npz'), 'wb') as f:
    f.write(weights.getvalue())
  signature = {'inputs': {k: {'shape': ['batch', *shape], 'dtype': 'float32'}
                          for k, shape in input_shapes.items()},
               'task': task, 'outputs': ['logits', 'scores'], 'artifacts': served,
               **dict(extra_signature or {})}
  with _open(_join(out_dir, 'signature.json'), 'w') as f:
    f.write(json.dumps(signature, indent=2))
  with _open(_join(out_dir, 'label_map.json'), 'w') as f:
    f.write(json.dumps(class_names, indent=2))
  if config_json is not None:
    with _open(_join(out_dir, 'config.json'), 'w') as f:
      f.write(config_json)
  return out_dir


class ExportedModel:
  """Callable inference model loaded from an export directory.

  ``model(inputs)`` takes a dict of ``[B, ...]`` float32 arrays (see
  ``model.signature['inputs']``) and returns the logits (a dict per output
  for several heads); ``model.scores(inputs)`` returns the scores the task
  reads from them (softmax, sigmoid). ``model.label_map`` names the classes.
  The artifact for this process's default backend is used.
  """

  def __init__(self, path: str, platform: Optional[str] = None):
    self.path = path
    self.signature = _read(path, 'signature.json', lambda f: json.loads(f.read()))
    platform = platform or jax.default_backend()
    artifacts = self.signature.get('artifacts')
    if not isinstance(artifacts, dict):
      raise UserError(f'{_join(path, "signature.json")}: damaged (no artifacts table); '
                      'export the checkpoint again')
    if platform not in artifacts:
      raise UserError(f'{path} has no inference artifact for platform {platform!r} '
                      f'(it has {sorted(artifacts)})')
    self._exported = _read(path, artifacts[platform],
                           lambda f: jax.export.deserialize(bytearray(f.read())), mode='rb')
    self.label_map = _read(path, 'label_map.json', lambda f: json.loads(f.read()))
    self.variables = _read(path, 'weights.npz', _read_weights, mode='rb')
    # The experiment config (an export may be written without one).
    self.config = (_read(path, 'config.json', lambda f: json.loads(f.read()))
                   if _exists(_join(path, 'config.json')) else None)
    self.task = self.signature['task']
    self.input_names = tuple(self.signature['inputs'])

  def predict(self, inputs: Mapping[str, Any]) -> dict:
    """``{'logits', 'scores'}`` of a batch (numpy)."""
    missing = [k for k in self.input_names if k not in inputs]
    if missing:
      raise KeyError(f'Inputs {missing} missing; the model takes {self.input_names}')
    args = {k: jnp.asarray(inputs[k], jnp.float32) for k in self.input_names}
    return jax.device_get(self._exported.call(self.variables, args))

  def __call__(self, inputs: Mapping[str, Any]):
    return self.predict(inputs)['logits']

  def scores(self, inputs: Mapping[str, Any]):
    return self.predict(inputs)['scores']


def _read_weights(f) -> dict:
  with np.load(io.BytesIO(f.read())) as weights:
    return trees.unflatten({k: weights[k] for k in weights.files})


def _read(path: str, name: str, parse: Callable, mode: str = 'r'):
  """``parse`` of file ``name`` of export ``path``; a missing or broken file is a ``UserError``."""
  file_path = _join(path, name)
  if not _exists(file_path):
    raise UserError(f'{file_path}: missing from the export directory; export the checkpoint '
                    'again (--mode export)')
  try:
    with _open(file_path, mode) as f:
      return parse(f)
  except Exception as e:  # pylint: disable=broad-except  # any parse failure: a broken file
    raise UserError(f'{file_path}: damaged ({type(e).__name__}: {e}); export the checkpoint '
                    'again (--mode export)') from None


def load(path: str, platform: Optional[str] = None) -> ExportedModel:
  """Loads an export directory written by ``--mode export``."""
  if not _isdir(path):
    raise UserError(f'{path}: no such export directory')
  if not _exists(_join(path, 'signature.json')):
    raise UserError(f'{path} is not an export directory (no signature.json); make one with '
                    'python -m avslowfast_jax.main --mode export ...')
  return ExportedModel(path, platform)


# Files: local paths with Python's own calls, remote ones (gs://, ...) through
# data_pipelines.fs. That layer needs TensorFlow's filesystems, so it is
# imported only for a remote path: loading a local export keeps needing jax and
# numpy alone (a serving process without TensorFlow), while exports to and from
# a bucket work wherever TensorFlow is installed (as it is with this project).
def _remote(path: str) -> bool:
  return '://' in str(path)


def _fs():
  from data_pipelines import fs  # pylint: disable=g-import-not-at-top  # TF: remote paths only
  return fs


def _join(path: str, name: str) -> str:
  return posixpath.join(path, name) if _remote(path) else os.path.join(path, name)


def _exists(path: str) -> bool:
  return _fs().exists(path) if _remote(path) else os.path.exists(path)


def _isdir(path: str) -> bool:
  return _fs().isdir(path) if _remote(path) else os.path.isdir(path)


def _makedirs(path: str) -> None:
  if _remote(path):
    _fs().makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


def _open(path: str, mode: str):
  return _fs().open(path, mode) if _remote(path) else open(path, mode)  # pylint: disable=W1514
