r"""Evidence for label-free pretraining on the built-in synthetic dataset.

  python -m avslowfast_jax.studies.ssl_evidence --workdir /tmp/ssl_evidence

Pretrains the synthetic pretraining config (``studies/configs/pretrain_synthetic.py``)
with each pretext (AVS + rotation, AVS only, rotation only) and each seed,
then scores every backbone, and randomly initialised ones, with the cached
linear probe of ``avslowfast_jax.tools.transfer``; writes ``WORKDIR/evidence.json``
and ``WORKDIR/evidence.md``. The results page (``studies/results.md``) gives its table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Sequence

import ml_collections
import numpy as np

from avslowfast_jax import cli, model_builder
from avslowfast_jax.tools import transfer
from avslowfast_jax.train import trainer
from data_pipelines import errors, fs, input_pipeline
from data_pipelines.errors import UserError

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The label-free pretraining config of these runs, beside this file.
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                      'pretrain_synthetic.py')


def pretrain_config() -> ml_collections.ConfigDict:
  return cli.load_config_file(f'{CONFIG}:pretrain')


PRETEXTS = {
    'avs_rotation': ('AVS + rotation', ()),
    'avs': ('AVS only', ('pretext.rotation=False',)),
    'rotation': ('rotation only', ('avs.enabled=False',)),
}


def evidence_data(workdir: str, videos_per_class: int, seed: int = 0) -> str:
  """The synthetic dataset, generated and prepared under ``workdir`` (skipped if there)."""
  # Lazy: the video writer (PyAV) is needed only to generate the data.
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  raw = fs.join(workdir, 'videos')
  shards = fs.join(workdir, 'shards')
  if fs.exists(fs.join(shards, 'shards.json')):
    return shards
  manifest = fs.join(raw, synthetic.MANIFEST_NAME)
  if not fs.exists(manifest):
    synthetic.generate(raw, num_videos_per_class=videos_per_class, seed=seed, size=(64, 48),
                       duration_sec=2.4, val_fraction=0.25, progress=False)
  result = subprocess.run(
      [sys.executable, '-m', 'data_pipelines.prepare', '--output_dir', shards, '--manifest',
       manifest, '--num_workers', '2', '--short_side', '40', '--min_frames', '32'],
      cwd=raw, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (_REPO, os.environ.get(
          'PYTHONPATH'))))))
  if result.returncode != 0:
    raise UserError(f'preparing {raw} failed: {errors.last_line(result.stderr)}')
  return shards


def evidence_probe_config(pretrain_config, probe_steps: int):
  """The linear probe of the evidence run: the paper's probe (lr 0.01, batch 64, cosine)
  on the synthetic labels, ``probe_steps`` iterations, on the pretraining run's model."""
  c = cli.load_config_file(f'{CONFIG}:linear_probe')
  c.data.data_dir = pretrain_config.data.data_dir
  c.seed = pretrain_config.seed
  c.model.num_classes = input_pipeline.dataset_info(c.data.data_dir)['num_classes']
  c.train.total_steps = probe_steps
  c.train.checkpoint_every_steps = probe_steps
  c.train.log_every_steps = max(1, probe_steps // 10)
  return c


def run_evidence(workdir: str, seeds: Sequence[int], pretrain_steps: int, probe_steps: int,
                 cached_epochs: float, videos_per_class: int, paper_probe_steps: int,
                 pretexts: Sequence[str] = tuple(PRETEXTS)) -> dict:
  """Label-free pretraining on the synthetic data with each pretext and each seed, then the
  cached linear probe of every backbone and of randomly initialised ones; plus the paper's
  probe against the cached one on the first AVS + rotation backbone."""
  started = time.time()
  fs.makedirs(workdir)
  shards = evidence_data(workdir, videos_per_class)
  out = {'settings': dict(seeds=list(seeds), pretrain_steps=pretrain_steps,
                          probe_steps=probe_steps, cached_epochs=cached_epochs,
                          videos_per_class=videos_per_class, cpu_count=os.cpu_count(),
                          paper_probe_steps=paper_probe_steps),
         'probe': {}, 'pretrain': {}}
  results_path = fs.join(workdir, 'evidence.json')
  probe_model = None
  # Seeds outermost: a run cut short still compares every backbone on its first seeds.
  for seed in seeds:
    for name in (*pretexts, 'random_init'):
      out['probe'].setdefault(name, {})
      base = pretrain_config()
      base.data.data_dir = shards
      base.seed = seed
      base.train.total_steps = pretrain_steps
      if name != 'random_init':
        cli.set_fields(base, PRETEXTS[name][1])
        run_dir = fs.join(workdir, 'pretrain', f'{name}_seed{seed}')
        t0 = time.time()
        last = trainer.train_and_evaluate(base, run_dir) or _last_logged(run_dir)
        out['pretrain'].setdefault(name, {})[seed] = {
            **{k: v for k, v in last.items() if k.split('/')[-1].startswith(
                ('loss', 'rotation_top1', 'avs_top1'))}, 'seconds': round(time.time() - t0, 1)}
        pretrained = run_dir
      else:
        pretrained = None
      probe = evidence_probe_config(base, probe_steps)
      if probe_model is None:
        probe_model = model_builder.build(probe)
      metrics = transfer.cached_linear_probe(probe, pretrained, cached_epochs, seed, probe_model)
      out['probe'][name][seed] = metrics
      print(f'{name} seed {seed}: cached linear probe top-1 {100 * metrics["top1"]:.1f}',
            flush=True)
      fs.write_json(results_path, out)
  if paper_probe_steps > 0:
    seed = seeds[0]
    base = pretrain_config()
    base.data.data_dir = shards
    base.seed = seed
    run_dir = fs.join(workdir, 'pretrain', f'avs_rotation_seed{seed}')
    probe = evidence_probe_config(base, paper_probe_steps)
    probe.train.init_from = run_dir
    paper = transfer.trained_probe(probe, fs.join(workdir, 'paper_probe'))
    cached = transfer.cached_linear_probe(probe, run_dir, cached_epochs, seed, probe_model)
    out['paper_vs_cached'] = {'steps': paper_probe_steps, 'paper': paper, 'cached': cached}
  out['minutes'] = round((time.time() - started) / 60, 1)
  fs.write_json(results_path, out)
  fs.write_text(fs.join(workdir, 'evidence.md'), evidence_table(out) + '\n')
  return out


def _last_logged(run_dir: str) -> dict:
  """The last logged training metrics of a finished run (``train_metrics.jsonl``)."""
  lines = fs.read_text(fs.join(run_dir, 'train_metrics.jsonl')).strip().splitlines()
  return {k[len('train/'):]: v for k, v in json.loads(lines[-1]).items() if k.startswith('train/')}


def _mean_spread(values) -> str:
  values = 100 * np.asarray(values, np.float64)
  return f'{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}'


def evidence_table(out: dict) -> str:
  """Markdown table of the evidence run (validation top-1 of the linear probe, %)."""
  seeds = out['settings']['seeds']
  titles = {k: v[0] for k, v in PRETEXTS.items()}
  titles['random_init'] = 'random init (no pretraining)'
  rows = ['| backbone | ' + ' | '.join(f'seed {s}' for s in seeds) + ' | mean ± std |',
          '|---|' + '---:|' * (len(seeds) + 1)]
  for name, per_seed in out['probe'].items():
    tops = [per_seed[s]['top1'] for s in seeds if s in per_seed]
    if len(tops) != len(seeds):
      continue
    rows.append(f'| {titles.get(name, name)} | ' + ' | '.join(f'{100 * t:.1f}' for t in tops)
                + f' | {_mean_spread(tops)} |')
  lines = ['\n'.join(rows)]
  pvc = out.get('paper_vs_cached')
  if pvc:
    lines.append(
        f'Paper protocol vs cached features ({pvc["steps"]} steps, AVS + rotation, seed '
        f'{seeds[0]}): top-1 {100 * pvc["paper"]["top1"]:.1f} (training loop, '
        f'{pvc["paper"]["train_seconds"]:.0f} s) vs {100 * pvc["cached"]["top1"]:.1f} '
        f'(cached, {pvc["cached"]["extract_seconds"]:.0f} s extraction + '
        f'{pvc["cached"]["linear_train_seconds"]:.0f} s training)')
  return '\n\n'.join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog='python -m avslowfast_jax.studies.ssl_evidence',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--pretrain_steps', type=int, default=200)
  parser.add_argument('--probe_steps', type=int, default=2000)
  parser.add_argument('--cached_epochs', type=float, default=4.0,
                      help='epochs of training views the cached probe extracts')
  parser.add_argument('--paper_probe_steps', type=int, default=150,
                      help='steps of the training-loop probe compared with the cached one '
                      '(0: skip)')
  parser.add_argument('--videos_per_class', type=int, default=16)
  parser.add_argument('--pretexts', nargs='+', default=list(PRETEXTS), choices=list(PRETEXTS))
  args = parser.parse_args(argv)
  transfer.set_up_process(args.workdir)
  out = run_evidence(args.workdir, args.seeds, args.pretrain_steps, args.probe_steps,
                     args.cached_epochs, args.videos_per_class, args.paper_probe_steps,
                     args.pretexts)
  print(evidence_table(out))
  print(f'({out["minutes"]} minutes; {args.workdir}/evidence.json)')
  return out


if __name__ == '__main__':
  errors.run(main)
