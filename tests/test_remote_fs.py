"""Every file the project reads or writes goes through data_pipelines/fs.py.

The whole path from source videos to an export runs on TensorFlow's in-memory
``ram://`` filesystem, standing in for a ``gs://`` bucket: the synthetic mp4s,
prepare, train a few steps, eval, export, loading the export. ``ram://`` is
per-process, so everything runs in this process. A path that slipped past the
filesystem layer would either fail (``open`` of ``ram://...``) or write a local
folder named ``ram:`` in the working directory, which the test looks for.

Orbax writes local paths and ``gs://`` only (checkpoints.py), so the
checkpoints go to a local ``train.checkpoint_dir``.
"""

import json
import os

import numpy as np
import pytest

from avslowfast_jax import export, main
from avslowfast_jax.evaluation import evaluator
from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax.train import trainer
from data_pipelines import adapters, fs, prepare, synthetic
from data_pipelines.errors import UserError
import train_testdata as td

BUCKET = 'ram://bucket'
STEPS = 4


def _local_files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


@pytest.mark.slow
def test_prepare_train_eval_export_on_a_non_local_filesystem(tmp_path, tmp_path_factory,
                                                            monkeypatch):
  monkeypatch.chdir(tmp_path)  # a relative 'ram:' folder would land here
  td.enable_compilation_cache(str(tmp_path_factory.getbasetemp() / 'jax_compilation_cache'))
  raw, shards, run = f'{BUCKET}/raw', f'{BUCKET}/shards', f'{BUCKET}/run'

  manifest = synthetic.generate(raw, num_videos_per_class=2, size=(48, 40), duration_sec=2.4,
                                classes=td.CLASSES, val_fraction=0.5, progress=False)
  items, labels, nouns = adapters.load_dataset('manifest', [manifest], raw)
  assert all(item.path.startswith(raw + '/') for item in items)
  report = prepare.prepare(items, shards, label_names=labels, noun_names=nouns,
                           options=prepare.PrepareOptions(short_side=40, min_frames=32),
                           videos_per_shard=2, verbose=False)
  assert report['summary']['num_written'] == 6, report
  for name in ('shards.json', 'label_map.json', 'prepare_report.json', 'dataset_info.json',
               'features.json', '_progress/train-00000.json',
               'videos-train.tfrecord-00000-of-00002'):
    assert fs.exists(fs.join(shards, name)), name

  checkpoint_dir = str(tmp_path / 'checkpoints_here')
  config = td.tiny_train_config(shards, **{
      'train.total_steps': STEPS, 'train.warmup_steps': 2, 'train.log_every_steps': 2,
      'train.checkpoint_every_steps': STEPS, 'train.eval_every_steps': -1,
      'train.async_checkpoints': False, 'train.checkpoint_dir': checkpoint_dir,
      'train.drop_pathway_prob': (0.0,), 'avs.enabled': False, 'model.arch': 'audio',
      'model.dropout_rate': 0.0})
  trainer.train_and_evaluate(config, run)
  rows = [json.loads(line) for line in fs.read_text(fs.join(run, 'train_metrics.jsonl'))
          .splitlines()]
  assert [r['step'] for r in rows] == [2, 4]
  assert all(np.isfinite(r['train/loss']) for r in rows)
  assert fs.read_json(fs.join(run, 'config.json'))['data']['data_dir'] == shards
  assert any(n.startswith('events.out.tfevents') for n in fs.listdir(run))
  assert ckpt_lib.resolve_checkpoint(checkpoint_dir, 'latest').startswith(
      os.path.join(checkpoint_dir, 'checkpoints', str(STEPS)))

  metrics = evaluator.run_eval_mode(config, run)
  results = fs.read_json(fs.join(run, 'eval_results.json'))
  assert results['step'] == STEPS and results['num_videos'] == 3
  assert results['top1'] == pytest.approx(metrics['top1'])
  scores = fs.load_npz(fs.join(run, 'per_video_scores.npz'))
  assert scores['scores'].shape == (3, 3)

  out = main.export_checkpoint(config, run, fs.join(run, 'export'))
  assert out == fs.join(run, 'export')
  model = export.load(out)
  assert model.label_map == list(td.CLASSES)
  assert model.config['train']['checkpoint_dir'] == checkpoint_dir
  inputs = {k: np.zeros((1, *v['shape'][1:]), np.float32)
            for k, v in model.signature['inputs'].items()}
  assert np.isfinite(model.scores(inputs)).all()

  # Nothing of the run reached the local disk but the checkpoints asked for there.
  assert not os.path.exists(tmp_path / 'ram:')
  assert all(f.startswith('checkpoints_here' + os.sep) for f in _local_files(tmp_path)), \
      _local_files(tmp_path)


def test_checkpoints_on_a_filesystem_orbax_cannot_write_are_refused():
  with pytest.raises(UserError, match=r'ram://bucket/x: orbax checkpoints go to a local path '
                                      r'or gs://; set --config.train.checkpoint_dir'):
    ckpt_lib.CheckpointIO(f'{BUCKET}/x')
