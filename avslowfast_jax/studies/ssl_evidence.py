r"""Evidence for label-free pretraining on the built-in synthetic dataset.

  python -m avslowfast_jax.studies.ssl_evidence --workdir /tmp/ssl_evidence
  python -m avslowfast_jax.studies.results --record evidence /tmp/ssl_evidence/evidence.json

Generates the synthetic dataset with upright scenes (``data_pipelines/synthetic.py``,
``upright``: shapes lit from above, ``up_down`` bouncing under gravity, so that rotation
prediction has something to learn) and ringing sync events, then, for each seed,
pretrains the synthetic pretraining config (``studies/configs/pretrain_synthetic.py``)
with each pretext (AVS + rotation, AVS only, rotation only) and, as the control, the
same run at learning rate 0 (the weights stay random, the BatchNorm statistics are
calibrated on the same clips for the same steps); as a reference of what the budget
allows, it trains the same model on the same clips with the labels for the same steps
(``supervised``: not label-free). It scores every backbone, and the plain random
initialisation, with the same linear probe (:func:`probe_backbone`: cached
features z-scored with the training features' statistics, the weight decay chosen on
held-out training videos). Writes ``WORKDIR/evidence.json`` (rewritten after each
backbone: a run cut short keeps what it finished; a finished pretraining run is
reused) and ``WORKDIR/evidence.md``. The second command keeps the JSON as the results
page's record (``studies/records/evidence.json``) and renders the page's evidence
table from it (:func:`evidence_markdown`, ``studies/results.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Dict, Mapping, Optional, Sequence

import ml_collections
import numpy as np

from avslowfast_jax import cli, model_builder
from avslowfast_jax.studies import provenance
from avslowfast_jax.tools import transfer
from avslowfast_jax.train import trainer
from data_pipelines import errors, fs, input_pipeline
from data_pipelines.errors import UserError

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))
# The label-free pretraining config of these runs, beside this file.
CONFIG = os.path.join(_HERE, 'configs', 'pretrain_synthetic.py')


def pretrain_config() -> ml_collections.ConfigDict:
  return cli.load_config_file(f'{CONFIG}:pretrain')


# The learning rate 0 of the control: AdamW's decoupled weight decay is scaled by the
# learning rate too, so no weight moves; only the BatchNorm running statistics do.
_LR_ZERO = ('train.base_lr=0.0', 'train.warmup_start_lr=0.0')
PRETEXTS = {
    'avs_rotation': ('AVS + rotation', ()),
    'avs': ('AVS only', ('pretext.rotation=False',)),
    'rotation': ('rotation only', ('avs.enabled=False',)),
}
# The reference of what the same steps teach with labels: the same model and clips trained
# on the synthetic classes (cross-entropy, no pretext). Not label-free: it shows what this
# budget lets a backbone learn with the labels, so that the pretexts' gains can be read
# against it.
_SUPERVISED = ('task=classification', 'pretext.rotation=False', 'avs.enabled=False')
# Every backbone the evidence scores: the pretexts, then the controls, then the labelled
# reference. ``None``: not trained.
BACKBONES = {
    **PRETEXTS,
    'calibrated': ('control: random weights, BN calibrated (AVS + rotation at lr 0)', _LR_ZERO),
    'random_init': ('random init (BN statistics at their initial values)', None),
    'supervised': ('reference: trained with the labels, the same steps (not label-free)',
                   _SUPERVISED),
}
CONTROL = 'calibrated'
# The probe's weight-decay grid (chosen per backbone on held-out training videos).
WEIGHT_DECAYS = (0.0, 1e-3, 1e-2, 1e-1)
# What the record keeps of a pretraining run's end: the mean of its last logged steps.
PRETRAIN_KEYS = ('loss', 'loss_rotation', 'rotation_top1', 'loss_avs', 'avs_top1', 'top1')
LAST_LOGGED = 5
# The videos' length: the 64-frame window of the pretraining clips (2.13 s at 30 fps) and
# the 0.5 s minimum shift of an AVS hard negative (``data.hard_negative_min_shift_sec``) fit
# inside, so that a hard negative is the video's own audio from elsewhere, not audio run
# past the end of the video and padded with silence.
DURATION_SEC = 3.2
# The goal of the evidence: the pretexts ahead of the control by at least these points.
MARGIN_COMBINED = 5.0
MARGIN_SINGLE = 0.0


# ------------------------------------------------------------------ the data
def evidence_data(workdir: str, videos_per_class: int, val_fraction: float = 0.25,
                  upright: bool = True, sync_events: str = 'ringing', seed: int = 0) -> str:
  """The synthetic dataset, generated and prepared under ``workdir`` (reused if there and
  made with the same settings)."""
  # Lazy: the video writer (PyAV) is needed only to generate the data.
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  raw = fs.join(workdir, 'videos')
  shards = fs.join(workdir, 'shards')
  wanted = dict(seed=seed, num_videos_per_class=videos_per_class, sync_events=sync_events,
                upright=upright, width=64, height=48, duration_sec=DURATION_SEC)
  classes_json = fs.join(raw, synthetic.CLASSES_NAME)
  if fs.exists(classes_json):
    made = fs.read_json(classes_json)['settings']
    made.setdefault('upright', False)
    made_split = made.get('split_counts', {})
    counts = synthetic.split_counts(videos_per_class, val_fraction, 0.0)
    if ({k: made.get(k) for k in wanted} != wanted
        or [made_split.get(k) for k in ('train', 'validation')] != list(counts[:2])):
      raise UserError(f'{raw} holds a dataset made with other settings ({made}); use another '
                      '--workdir or remove it')
  if fs.exists(fs.join(shards, 'shards.json')):
    return shards
  manifest = fs.join(raw, synthetic.MANIFEST_NAME)
  if not fs.exists(manifest):
    synthetic.generate(raw, num_videos_per_class=videos_per_class, seed=seed, size=(64, 48),
                       duration_sec=DURATION_SEC, val_fraction=val_fraction, progress=False,
                       sync_events=sync_events, upright=upright)
  result = subprocess.run(
      [sys.executable, '-m', 'data_pipelines.prepare', '--output_dir', shards, '--manifest',
       manifest, '--num_workers', '2', '--short_side', '40', '--min_frames', '32'],
      cwd=raw, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (_REPO, os.environ.get(
          'PYTHONPATH'))))))
  if result.returncode != 0:
    raise UserError(f'preparing {raw} failed: {errors.last_line(result.stderr)}')
  return shards


# ----------------------------------------------------------------- the probe
def evidence_probe_config(pretrain_config, probe_steps: int):
  """The linear probe of the evidence run: the paper's probe (SGD, lr 0.01, batch 64,
  cosine; ``studies/configs/pretrain_synthetic.py:linear_probe``) on the synthetic
  labels, ``probe_steps`` iterations, on the pretraining run's model."""
  c = cli.load_config_file(f'{CONFIG}:linear_probe')
  c.data.data_dir = pretrain_config.data.data_dir
  c.seed = pretrain_config.seed
  c.model.num_classes = input_pipeline.dataset_info(c.data.data_dir)['num_classes']
  c.train.total_steps = probe_steps
  c.train.checkpoint_every_steps = probe_steps
  c.train.log_every_steps = max(1, probe_steps // 10)
  return c


def probe_backbone(probe, pretrained: Optional[str], settings: Mapping, seed: int,
                   model_task=None) -> dict:
  """The evidence's linear probe of one backbone (``pretrained`` None: random init).

  The features of ``cached_epochs`` epochs of training views are z-scored with their own
  mean and standard deviation (the evaluation views with the same), so that no backbone
  is judged by the scale of its features: a fixed learning rate underfits a backbone
  whose features are small (the random one's, whose BatchNorm statistics are still at
  their initial values, are about 15 times smaller). The weight decay is then chosen
  from ``WEIGHT_DECAYS`` on a held-out quarter of the training videos and the layer
  trained on all of them; the same grid and steps for every backbone."""
  metrics = transfer.cached_linear_probe(
      probe, pretrained, settings['cached_epochs'], seed, model_task,
      normalise=settings['probe_normalise'], weight_decays=settings['weight_decays'],
      held_out=settings['probe_held_out'])
  keep = ('top1', 'top5', 'per_class_top1', 'num_videos', 'num_views', 'train_views',
          'feature_dim', 'feature_scale', 'final_train_loss', 'weight_decay',
          'weight_decay_sweep', 'extract_seconds', 'linear_train_seconds')
  return {k: metrics[k] for k in keep if k in metrics}


# ------------------------------------------------------------------ the run
def _cpu_seconds() -> float:
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _pretrain(name: str, seed: int, shards: str, workdir: str, steps: int) -> tuple:
  """Pretrains backbone ``name`` (reusing a finished run); ``(run_dir, end metrics)``."""
  base = pretrain_config()
  base.data.data_dir = shards
  base.seed = seed
  base.train.total_steps = steps
  cli.set_fields(base, BACKBONES[name][1])
  run_dir = fs.join(workdir, 'pretrain', f'{name}_seed{seed}')
  made = fs.join(run_dir, 'config.json')
  if fs.exists(made) and fs.read_json(made) != json.loads(base.to_json_best_effort()):
    raise UserError(f'{run_dir} is a run made with other settings (its config.json): use '
                    'another --workdir or remove it')
  t0 = time.time()
  trainer.train_and_evaluate(base, run_dir)
  end = last_logged(run_dir)
  end['seconds'] = round(time.time() - t0, 1)
  return base, run_dir, end


def run_evidence(workdir: str, settings: Mapping, backbones: Sequence[str] = tuple(BACKBONES)
                 ) -> dict:
  """Every backbone of ``backbones`` for every seed of ``settings``, probed; the record."""
  started, cpu_started = time.time(), _cpu_seconds()
  fs.makedirs(workdir)
  shards = evidence_data(workdir, settings['videos_per_class'], settings['val_fraction'],
                         settings['upright'], settings['sync_events'])
  info = input_pipeline.dataset_info(shards)
  out = {'settings': {**settings, 'class_names': info['label_map'],
                      'num_examples': info['num_examples']},
         'environment': provenance.environment(), 'probe': {}, 'pretrain': {}}
  results_path = fs.join(workdir, 'evidence.json')
  probe_model = None
  # Seeds outermost: a run cut short still compares every backbone on its first seeds.
  for seed in settings['seeds']:
    for name in backbones:
      if BACKBONES[name][1] is not None:
        base, pretrained, end = _pretrain(name, seed, shards, workdir,
                                          settings['pretrain_steps'])
        out['pretrain'].setdefault(name, {})[str(seed)] = end
      else:
        base, pretrained = pretrain_config(), None
        base.data.data_dir, base.seed = shards, seed
      probe = evidence_probe_config(base, settings['probe_steps'])
      if probe_model is None:
        probe_model = model_builder.build(probe)
      metrics = probe_backbone(probe, pretrained, settings, seed, probe_model)
      out['probe'].setdefault(name, {})[str(seed)] = metrics
      print(f'{name} seed {seed}: linear probe top-1 {100 * metrics["top1"]:.1f}', flush=True)
      fs.write_json(results_path, out)
  out['timing'] = {'minutes': round((time.time() - started) / 60, 1),
                   'cpu_minutes': round((_cpu_seconds() - cpu_started) / 60, 1)}
  out['goal'] = goal(out)
  fs.write_json(results_path, out)
  fs.write_text(fs.join(workdir, 'evidence.md'), evidence_markdown(out) + '\n')
  return out


def last_logged(run_dir: str, count: int = LAST_LOGGED) -> dict:
  """The mean of the last ``count`` logged training metrics of a finished run."""
  lines = fs.read_text(fs.join(run_dir, 'train_metrics.jsonl')).strip().splitlines()
  records = [json.loads(line) for line in lines[-count:]]
  out = {}
  for key in PRETRAIN_KEYS:
    values = [r[f'train/{key}'] for r in records if f'train/{key}' in r]
    if values:
      out[key] = float(np.mean(values))
  out['steps'] = int(records[-1].get('step', 0)) if records else 0
  return out


# -------------------------------------------------------------- the tables
def _top1(out: Mapping, name: str) -> np.ndarray:
  """Top-1 (%) of backbone ``name`` per seed of the record (NaN where missing)."""
  per_seed = out['probe'].get(name, {})
  return np.asarray([100 * per_seed[str(s)]['top1'] if str(s) in per_seed else np.nan
                     for s in out['settings']['seeds']], np.float64)


def _mean_std(values) -> str:
  values = np.asarray(values, np.float64)
  spread = values.std(ddof=1) if len(values) > 1 else 0.0
  return f'{values.mean():.1f} ± {spread:.1f}'


def _complete(out: Mapping, name: str) -> bool:
  return name in out['probe'] and not np.isnan(_top1(out, name)).any()


def goal(out: Mapping) -> dict:
  """Whether each pretext is ahead of the control (mean over seeds, in points) by its
  margin: ``MARGIN_COMBINED`` for AVS + rotation, ``MARGIN_SINGLE`` for each single one;
  and whether AVS + rotation is the best pretext (the order of the paper's Table A.1)."""
  if not _complete(out, CONTROL):
    return {}
  control = _top1(out, CONTROL).mean()
  result = {}
  for name, margin in (('avs_rotation', MARGIN_COMBINED), ('avs', MARGIN_SINGLE),
                       ('rotation', MARGIN_SINGLE)):
    if _complete(out, name):
      # To a hundredth of a point: a tie must not count as ahead by rounding error.
      gap = round(float(_top1(out, name).mean() - control), 2)
      result[name] = {'points_over_control': gap, 'margin': margin,
                      'met': bool(gap > margin if margin == 0 else gap >= margin)}
  if all(_complete(out, n) for n in PRETEXTS):
    means = {n: _top1(out, n).mean() for n in PRETEXTS}
    result['combined_best'] = bool(max(means, key=means.get) == 'avs_rotation')
  return result


def _groups(out: Mapping) -> Dict[str, list]:
  """The class indices of each class group (visual, audio, sync) of the record's classes."""
  from data_pipelines import synthetic_scenes  # pylint: disable=g-import-not-at-top
  groups: Dict[str, list] = {'visual': [], 'audio': [], 'audiovisual': []}
  for index, name in enumerate(out['settings']['class_names']):
    spec = synthetic_scenes.CLASSES_BY_NAME.get(name)
    if spec is not None:
      groups[spec.modality].append(index)
  return groups


def evidence_markdown(out: Mapping) -> str:
  """The tables of an evidence record: the probe's top-1 per backbone and seed, by class
  group, the pretexts at the end of pretraining, the goal, and where it ran."""
  settings = out['settings']
  seeds = settings['seeds']
  names = [n for n in BACKBONES if n in out['probe']]
  control = _top1(out, CONTROL) if _complete(out, CONTROL) else None
  rows = ['| backbone | ' + ' | '.join(f'seed {s}' for s in seeds)
          + ' | mean ± std | vs control |', '|---|' + '---:|' * (len(seeds) + 2)]
  for name in names:
    tops = _top1(out, name)
    cells = ' | '.join('–' if np.isnan(t) else f'{t:.1f}' for t in tops)
    done = not np.isnan(tops).any()
    gap = ('' if control is None or name == CONTROL or not done
           else f'{_signed(np.mean(tops - control))} ± {np.std(tops - control, ddof=1):.1f}'
           if len(seeds) > 1 else _signed(np.mean(tops - control)))
    rows.append(f'| {BACKBONES[name][0]} | {cells} | {_mean_std(tops) if done else "–"} '
                f'| {gap} |')
  parts = ['\n'.join(rows)]

  groups = _groups(out)
  if any(groups.values()):
    rows = ['| backbone | visual classes | audio classes | sync classes |',
            '|---|---:|---:|---:|']
    for name in names:
      per_seed = [out['probe'][name][str(s)] for s in seeds if str(s) in out['probe'][name]]
      cells = []
      for key in ('visual', 'audio', 'audiovisual'):
        values = [100 * np.mean([m['per_class_top1'][i] for i in groups[key]])
                  for m in per_seed]
        cells.append(_mean_std(values))
      rows.append(f'| {BACKBONES[name][0]} | ' + ' | '.join(cells) + ' |')
    parts.append('Mean top-1 of each class group (mean ± std over the seeds):\n\n'
                 + '\n'.join(rows))

  rows = ['| pretraining | rotation loss | rotation top-1 | AVS loss | AVS top-1 | class top-1 '
          '| minutes |', '|---|---:|---:|---:|---:|---:|---:|']
  for name in [n for n in BACKBONES if n in out['pretrain']]:
    ends = list(out['pretrain'][name].values())

    def cell(key, digits, scale=1.0, ends=ends):
      values = [scale * e[key] for e in ends if key in e]
      return f'{np.mean(values):.{digits}f}' if values else '–'
    minutes = np.mean([e['seconds'] for e in ends]) / 60
    rows.append(f'| {BACKBONES[name][0]} | {cell("loss_rotation", 2)} | '
                f'{cell("rotation_top1", 1, 100.0)} | {cell("loss_avs", 2)} | '
                f'{cell("avs_top1", 1, 100.0)} | {cell("top1", 1, 100.0)} | {minutes:.1f} |')
  if len(rows) > 2:
    parts.append(f'At the end of pretraining (each run\'s mean over its last {LAST_LOGGED} '
                 'logged steps, then the mean over the seeds; top-1 in %; a rotation loss of '
                 'ln 4 = 1.39 is chance; class top-1: the labelled run\'s training top-1, '
                 'with DropPathway; minutes per run):\n\n' + '\n'.join(rows))

  checks = out.get('goal') or goal(out)
  if checks:
    words = []
    for name, margin in (('avs_rotation', MARGIN_COMBINED), ('avs', MARGIN_SINGLE),
                         ('rotation', MARGIN_SINGLE)):
      if name in checks:
        c = checks[name]
        words.append(f'{BACKBONES[name][0]} {_signed(c["points_over_control"])} points '
                     f'over the control (goal: {"at least " if margin else "more than "}'
                     f'{margin:g}): {"met" if c["met"] else "not met"}')
    if 'combined_best' in checks:
      words.append('AVS + rotation the best pretext (the paper\'s Table A.1 order): '
                    + ('yes' if checks['combined_best'] else 'no'))
    parts.append('Goal: ' + '; '.join(words) + '.')

  timing = out.get('timing', {})
  if timing:
    parts.append(f'The command took {timing["minutes"]} minutes wall clock and '
                 f'{timing["cpu_minutes"]} CPU minutes.')
  return '\n\n'.join(parts)


def _signed(value: float) -> str:
  return f'{value:+.1f}'


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog='python -m avslowfast_jax.studies.ssl_evidence',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', help='where the data, the runs and evidence.json go')
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--pretrain_steps', type=int, default=400)
  parser.add_argument('--probe_steps', type=int, default=2000)
  parser.add_argument('--cached_epochs', type=float, default=4.0,
                      help='epochs of training views the probe extracts')
  parser.add_argument('--videos_per_class', type=int, default=32)
  parser.add_argument('--val_fraction', type=float, default=0.375)
  parser.add_argument('--default_scenes', action='store_true',
                      help='the generator\'s default scenes (no up: rotation cannot be learned) '
                      'instead of upright ones')
  parser.add_argument('--sync_events', choices=('brief', 'ringing'), default='ringing')
  parser.add_argument('--backbones', nargs='+', default=list(BACKBONES), choices=list(BACKBONES))
  parser.add_argument('--data_only', action='store_true',
                      help='make the dataset (WORKDIR/shards) and stop')
  args = parser.parse_args(argv)
  if not args.workdir:
    parser.error('--workdir is required')
  if args.data_only:
    shards = evidence_data(args.workdir, args.videos_per_class, args.val_fraction,
                           not args.default_scenes, args.sync_events)
    print(f'Prepared {shards}')
    return {'shards': shards}
  transfer.set_up_process(args.workdir)
  settings = dict(seeds=list(args.seeds), pretrain_steps=args.pretrain_steps,
                  probe_steps=args.probe_steps, cached_epochs=args.cached_epochs,
                  videos_per_class=args.videos_per_class, val_fraction=args.val_fraction,
                  upright=not args.default_scenes, sync_events=args.sync_events,
                  probe_normalise='zscore', weight_decays=list(WEIGHT_DECAYS),
                  probe_held_out=0.25)
  out = run_evidence(args.workdir, settings, args.backbones)
  print(evidence_markdown(out))
  record = fs.join(args.workdir, 'evidence.json')
  print(f'({out["timing"]["minutes"]} minutes; {record}: keep it as the results page\'s '
        f'record with python -m avslowfast_jax.studies.results --record evidence {record})')
  return out


if __name__ == '__main__':
  errors.run(main)
