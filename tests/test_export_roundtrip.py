"""export_inference + load on a small pure function: symbolic batch, weights, label map."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax import export


def predict(variables, inputs):
  # A stand-in with the model's inputs and variable collections.
  h = jnp.mean(inputs['fast'], axis=(1, 2, 3)) @ variables['params']['head']['kernel']
  h = h + jnp.mean(inputs['audio'], axis=(1, 2, 3))[:, None]
  return (h - variables['batch_stats']['bn']['mean']) * variables['params']['bn']['scale']


def test_export_load_roundtrip_with_any_batch(tmp_path):
  rng = np.random.default_rng(0)
  variables = {'params': {'head': {'kernel': rng.normal(size=(3, 4)).astype(np.float32)},
                          'bn': {'scale': rng.normal(size=(4,)).astype(np.float32)}},
               'batch_stats': {'bn': {'mean': rng.normal(size=(4,)).astype(np.float32)}}}
  specs = {'fast': (4, 8, 8, 3), 'audio': (16, 10, 1)}
  out = export.export_inference(predict, variables, specs, str(tmp_path / 'exp'), head='softmax',
                                label_map=['a', 'b', 'c', 'd'], config_json='{"x": 1}')
  model = export.load(out)
  assert model.label_map == ['a', 'b', 'c', 'd']
  assert model.input_names == ('fast', 'audio')
  assert 'cpu' in model.signature['platforms']
  assert json.load(open(tmp_path / 'exp' / 'config.json')) == {'x': 1}
  for batch in (1, 3):
    inputs = {k: rng.normal(size=(batch, *s)).astype(np.float32) for k, s in specs.items()}
    np.testing.assert_allclose(model(inputs), predict(variables, inputs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.scores(inputs).sum(-1), 1.0, rtol=1e-5)
  with pytest.raises(KeyError, match='audio'):
    model({'fast': np.zeros((1, *specs['fast']), np.float32)})
  weights = np.load(tmp_path / 'exp' / 'weights.npz')
  assert sorted(weights.files) == ['batch_stats/bn/mean', 'params/bn/scale', 'params/head/kernel']


def test_load_rejects_non_export_dir(tmp_path):
  with pytest.raises(FileNotFoundError, match='not an export directory'):
    export.load(str(tmp_path))
