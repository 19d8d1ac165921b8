"""Self-contained inference export, and its loader.

An export directory holds::

  weights.npz          params and BN statistics ('params/...', 'batch_stats/...'), no optimizer state
  inference.jaxexport  serialized ``jax.export`` of ``f(variables, inputs) -> logits`` with a
                       symbolic batch dimension, lowered for CPU, GPU and TPU where possible
  signature.json       input names/shapes/dtypes, head, output kind, platforms
  config.json          the full experiment config
  label_map.json       class names (verbs/nouns for EPIC)

:func:`load` needs only jax and numpy: neither the model code nor the config
system.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PLATFORMS = ('cpu', 'cuda', 'tpu')


def _flatten(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    name = f'{prefix}{k}'
    if isinstance(v, Mapping):
      out.update(_flatten(v, name + '/'))
    else:
      out[name] = np.asarray(v)
  return out


def _unflatten(flat):
  out = {}
  for name, v in flat.items():
    node = out
    parts = name.split('/')
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = v
  return out


def export_inference(predict_fn, variables, input_specs: Mapping[str, Any], out_dir: str, *,
                     head: str, label_map: Optional[Sequence] = None,
                     config_json: Optional[str] = None,
                     platforms: Sequence[str] = PLATFORMS,
                     extra_signature: Optional[Mapping[str, Any]] = None) -> str:
  """Writes the export directory; returns its path.

  ``predict_fn(variables, inputs) -> logits`` must be pure; ``input_specs``
  maps input names to per-example shapes (without the batch dimension).
  """
  os.makedirs(out_dir, exist_ok=True)
  variables = jax.device_get({k: variables[k] for k in ('params', 'batch_stats') if k in variables})
  variables = jax.tree.map(np.asarray, variables)
  batch = jax.export.symbolic_shape('batch')[0]
  var_specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables)
  in_specs = {k: jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
              for k, shape in input_specs.items()}
  fn = jax.jit(predict_fn)
  try:
    exported = jax.export.export(fn, platforms=tuple(platforms))(var_specs, in_specs)
  except Exception as e:  # pylint: disable=broad-except
    # Some op may not lower for every platform on this machine: keep the local one.
    local = jax.default_backend()
    print(f'Export for {platforms} failed ({type(e).__name__}: {e}); exporting for {local} only')
    exported = jax.export.export(fn, platforms=(local,))(var_specs, in_specs)
  with open(os.path.join(out_dir, 'inference.jaxexport'), 'wb') as f:
    f.write(exported.serialize())
  np.savez(os.path.join(out_dir, 'weights.npz'), **_flatten(variables))
  signature = {'inputs': {k: {'shape': ['batch', *shape], 'dtype': 'float32'}
                          for k, shape in input_specs.items()},
               'head': head, 'platforms': list(exported.platforms),
               'outputs': ['verb', 'noun'] if head == 'verb_noun' else 'logits',
               **dict(extra_signature or {})}
  with open(os.path.join(out_dir, 'signature.json'), 'w') as f:
    json.dump(signature, f, indent=2)
  with open(os.path.join(out_dir, 'label_map.json'), 'w') as f:
    json.dump(label_map, f, indent=2)
  if config_json is not None:
    with open(os.path.join(out_dir, 'config.json'), 'w') as f:
      f.write(config_json)
  return out_dir


class ExportedModel:
  """Callable inference model loaded from an export directory.

  ``model(inputs)`` takes a dict of ``[B, ...]`` float32 arrays (see
  ``model.signature['inputs']``) and returns logits (a dict ``verb``/``noun``
  for EPIC models); ``model.scores(inputs)`` returns softmax (sigmoid for
  multi-label) scores. ``model.label_map`` lists the class names.
  """

  def __init__(self, path: str):
    self.path = path
    with open(os.path.join(path, 'inference.jaxexport'), 'rb') as f:
      self._exported = jax.export.deserialize(bytearray(f.read()))
    with open(os.path.join(path, 'signature.json')) as f:
      self.signature = json.load(f)
    with open(os.path.join(path, 'label_map.json')) as f:
      self.label_map = json.load(f)
    with np.load(os.path.join(path, 'weights.npz')) as weights:
      self.variables = _unflatten({k: weights[k] for k in weights.files})
    self.head = self.signature['head']
    self.input_names = tuple(self.signature['inputs'])

  def __call__(self, inputs: Mapping[str, Any]):
    missing = [k for k in self.input_names if k not in inputs]
    if missing:
      raise KeyError(f'Inputs {missing} missing; the model takes {self.input_names}')
    args = {k: jnp.asarray(inputs[k], jnp.float32) for k in self.input_names}
    return jax.device_get(self._exported.call(self.variables, args))

  def scores(self, inputs: Mapping[str, Any]):
    logits = self(inputs)
    if self.head == 'sigmoid':
      return jax.device_get(jax.nn.sigmoid(logits))
    return jax.device_get(jax.tree.map(lambda l: jax.nn.softmax(l, axis=-1), logits))


def load(path: str) -> ExportedModel:
  """Loads an export directory written by ``--mode export``."""
  if not os.path.exists(os.path.join(path, 'inference.jaxexport')):
    raise FileNotFoundError(f'{path} is not an export directory (no inference.jaxexport)')
  return ExportedModel(path)


def label_map_of(data_dir: str, head: str = 'softmax'):
  """Class names of a prepared dataset (``{'verb', 'noun'}`` lists for EPIC), or None."""
  path = os.path.join(data_dir, 'label_map.json') if data_dir else ''
  if not path or not os.path.exists(path):
    return None
  with open(path) as f:
    names = json.load(f)
  if isinstance(names, dict):
    if head == 'verb_noun':
      return {'verb': names.get('labels', []), 'noun': names.get('nouns', [])}
    return names.get('labels')
  return names


def _prepared_short_side(config):
  # predict.py decodes files as data_pipelines.prepare did for this dataset.
  try:
    from data_pipelines import input_pipeline  # pylint: disable=g-import-not-at-top
    return int(input_pipeline.dataset_info(config.data.data_dir)['short_side'])
  except Exception:  # pylint: disable=broad-except
    return None


def run_export_mode(config, workdir: str, out_dir: str) -> str:
  """``--mode export``: the ``eval.checkpoint`` of ``workdir`` as an inference export."""
  from avslowfast_jax import parallel  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.train import trainer  # pylint: disable=g-import-not-at-top
  mesh = parallel.create_mesh(jax.local_devices()[:1])
  variables, item_dir = evaluator.restore_variables(config, workdir, mesh, config.eval.checkpoint)
  model = trainer.build_model(config)
  specs = state_lib.input_specs(config, 1, train=False)
  path = export_inference(step_lib.make_predict_fn(config, model), variables,
                          {k: tuple(v.shape[1:]) for k, v in specs.items()}, out_dir,
                          head=config.model.head, label_map=label_map_of(config.data.data_dir, config.model.head),
                          config_json=config.to_json_best_effort(indent=2),
                          extra_signature={'prepared_short_side': _prepared_short_side(config)})
  print(f'Exported {item_dir} to {path}')
  return path
