r"""Small-scale counterparts of the paper's ablations, on the built-in synthetic dataset.

  python -m avslowfast_jax.studies.ablate --workdir /tmp/ablate [--seeds 0 1 2] \
      [--steps N] [--num_videos K] [--studies drop_pathway avs fusion]

Makes the quickstart's data once under WORKDIR (the synthetic mp4s, prepared
at a 72-pixel short side), then trains the quickstart's tiny models
(avslowfast_jax/studies/configs/quickstart.py) on smaller crops and spectrograms (``SCALE``) in this
process, one run per setting and seed, and evaluates each with multi-view
testing. Studies:

- ``drop_pathway`` (paper Table 5c): DropPathway rate P_d 0 (none), 0.5, 0.8;
- ``avs`` (Table 5d): the AVS loss at no junction, at pool5 only, at
  res3 + res4 + pool5;
- ``fusion`` (Table 6): audio laterals at no stage (pool5 late fusion only) and
  at res3 + res4; the SlowFast and Audio-only models; "SlowFast + Audio", the
  late fusion of those two (tools/ensemble.py); and, not run by default, the
  laterals at res4 and at res2 + res3 + res4.

``--studies STUDY:ROW,ROW`` runs some rows of a study (``STUDIES`` names them),
``STUDY:all`` all of them.

A setting that two studies share (the default AVSlowFast: P_d 0.8, AVS at
res3 + res4 + pool5, laterals at res3 + res4) is trained once per seed. Each
run is ``WORKDIR/runs/<setting>/seed<S>``; an evaluated run is skipped, so a
command cut short picks up where it stopped. Writes ``WORKDIR/ablate.json``
(every run and each study's mean and sample standard deviation over the
seeds of top-1 and of the mean top-1 of each class group: visual, audio and
sync classes), ``WORKDIR/ablate.md`` (the tables) and ``WORKDIR/ablate.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax
import ml_collections
import numpy as np
import tensorflow as tf

from avslowfast_jax import cli, host_memory, trees
from avslowfast_jax.evaluation import evaluator
from avslowfast_jax.studies import quickstart
from avslowfast_jax.tools import ensemble
from avslowfast_jax.train import trainer
from data_pipelines import errors, fs, input_pipeline
from data_pipelines.errors import UserError

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What each run reports: (key, column title). The class groups are the
# synthetic classes by the modality they need (data_pipelines/synthetic.py).
METRICS = (('top1', 'top-1'), ('visual_classes', 'visual classes'),
           ('audio_classes', 'audio classes'), ('sync_classes', 'sync classes'))
_GROUPS = {'visual': 'visual_classes', 'audio': 'audio_classes', 'audiovisual': 'sync_classes'}


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of a study: a quickstart variant with config overrides, or the late fusion
  (mean of per-video scores) of other rows' runs; with the paper's Kinetics-400 top-1."""
  key: str  # names the row in --studies STUDY:KEY,...
  label: str
  variant: str = 'avslowfast'
  overrides: Tuple[str, ...] = ()
  paper_top1: Optional[float] = None
  paper_ref: str = ''
  members: Tuple['Row', ...] = ()
  in_default: bool = True  # run by ``--studies STUDY``; ``STUDY:all`` or ``STUDY:KEY`` else


_SLOWFAST = Row('slowfast', 'SlowFast', 'slowfast', paper_top1=75.6, paper_ref='Table 6')
_AUDIO = Row('audio', 'Audio only', 'audio', paper_top1=24.8, paper_ref='Table A.3')

# The paper's numbers: Kinetics-400 top-1 of AVSlowFast 4x16, R50 (Tables 5c, 5d, 6)
# and of the Audio-only model (appendix A.2, Table A.3). The paper's AVS junction
# "res5" is this code's pool5 junction (the pooled res5 features).
STUDIES: Dict[str, Tuple[str, Tuple[Row, ...]]] = {
    'drop_pathway': ('DropPathway rate P_d (paper Table 5c)', (
        Row('none', 'P_d none', overrides=('train.drop_pathway_prob=0.0',),
            paper_top1=75.2, paper_ref='Table 5c'),
        Row('0.5', 'P_d 0.5', overrides=('train.drop_pathway_prob=0.5',),
            paper_top1=76.7, paper_ref='Table 5c'),
        Row('0.8', 'P_d 0.8', overrides=('train.drop_pathway_prob=0.8',),
            paper_top1=77.0, paper_ref='Table 5c'),
    )),
    'avs': ('AVS loss junctions (paper Table 5d)', (
        Row('none', 'no AVS', overrides=('avs.enabled=False',),
            paper_top1=76.4, paper_ref='Table 5d'),
        Row('pool5', 'pool5', overrides=("avs.junctions=('pool5',)",),
            paper_top1=76.7, paper_ref='Table 5d (res5)'),
        Row('res3_res4_pool5', 'res3 + res4 + pool5',
            overrides=("avs.junctions=('res3','res4','pool5')",),
            paper_top1=77.0, paper_ref='Table 5d (res3,4,5)'),
    )),
    'fusion': ('Audio fusion stages (paper Table 6)', (
        _SLOWFAST,
        _AUDIO,
        Row('slowfast+audio', 'SlowFast + Audio (late fusion)', 'ensemble',
            members=(_SLOWFAST, _AUDIO), paper_top1=76.1, paper_ref='Table 6'),
        Row('pool5', 'pool5', overrides=('model.audio_lateral_stages=()',),
            paper_top1=75.4, paper_ref='Table 6'),
        Row('res4', 'res4 + pool5', overrides=("model.audio_lateral_stages=('res4',)",),
            paper_top1=76.5, paper_ref='Table 6', in_default=False),
        Row('res3_res4', 'res3,4 + pool5',
            overrides=("model.audio_lateral_stages=('res3','res4')",),
            paper_top1=77.0, paper_ref='Table 6'),
        Row('res2_res3_res4', 'res2,3,4 + pool5',
            overrides=("model.audio_lateral_stages=('res2','res3','res4')",),
            paper_top1=75.8, paper_ref='Table 6', in_default=False),
    )),
}


def select(studies: Sequence[str]) -> Dict[str, Tuple[Row, ...]]:
  """``{study: rows}`` of ``--studies`` entries ``STUDY`` (its default rows),
  ``STUDY:all`` (every row) or ``STUDY:KEY,KEY``."""
  out: Dict[str, Tuple[Row, ...]] = {}
  for item in studies:
    study, _, keys = item.partition(':')
    if study not in STUDIES:
      raise UserError(f'--studies {item!r}: unknown study {study!r}; expected one of '
                      f'{", ".join(STUDIES)} (optionally STUDY:ROW,ROW or STUDY:all)')
    rows = STUDIES[study][1]
    if not keys:
      rows = tuple(r for r in rows if r.in_default)
    elif keys != 'all':
      known = {r.key: r for r in rows}
      unknown = [k for k in keys.split(',') if k not in known]
      if unknown:
        raise UserError(f'--studies {item!r}: no row {", ".join(unknown)} in {study}; its rows '
                        f'are {", ".join(known)}')
      rows = tuple(r for r in rows if r.key in keys.split(','))
    out[study] = tuple(dict.fromkeys(out.get(study, ()) + rows))
  return out


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run (or late fusion of ``members``' runs) of one seed."""
  name: str
  variant: str
  overrides: Tuple[str, ...]
  seed: int
  members: Tuple[str, ...] = ()


# ---------------------------------------------------------------- configs
# The quickstart's models on smaller inputs: 48x48 crops (of frames resized to a
# short side of 54-66) instead of 64x64, and 40 log-mel bins instead of 80. Cheaper
# steps let three seeds of every default row train long enough for the visual pathways
# to learn the motion classes; at 32x32 they learn them much less well (studies/results.md).
SCALE = ('data.train_jitter_scales=(54,66)', 'data.train_crop_size=48',
         'data.test_short_side=54', 'data.test_crop_size=48', 'data.audio.num_mels=40')
# The paper's DropPathway, a constant rate (Table 5c), in place of the quickstart's ramp:
# the study of P_d sets only the rate.
DROP_PATHWAY = ('train.drop_pathway_prob=0.8',)


def run_config(variant: str, overrides: Sequence[str], seed: int, steps: int, shards: str,
               sets: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config of one run: the quickstart's ``variant`` at the ablations' ``SCALE``
  with a constant DropPathway rate, ``steps`` steps, no evaluation during training,
  then the user's ``sets`` and the row's ``overrides``."""
  c = cli.load_config_file(f'{quickstart.CONFIG}:{variant}')
  c.data.data_dir = shards
  c.seed = seed
  c.train.total_steps = steps
  # Only the final multi-view evaluation counts here: no evaluation while training.
  c.train.eval_every_steps = -1
  cli.set_fields(c, SCALE)
  cli.set_fields(c, DROP_PATHWAY)
  cli.set_fields(c, sets)
  cli.set_fields(c, overrides)
  return c


def _text(value) -> str:
  if isinstance(value, (tuple, list)):
    return '+'.join(str(v) for v in value) or 'none'
  return str(value)


def setting_name(variant: str, overrides: Sequence[str], sets: Sequence[str] = ()) -> str:
  """The run name of a setting: the variant and the config fields that
  ``overrides`` set to other values (fields that follow from them, such as the
  quickstart's lateral scale from P_d, are left out). Overrides that restate a
  default give the variant's own name, so identical settings of different
  studies are one run."""
  base = trees.flatten(run_config(variant, (), 0, 1, '', sets).to_dict(), '.')
  mine = trees.flatten(run_config(variant, overrides, 0, 1, '', sets).to_dict(), '.')
  named = {item.partition('=')[0] for item in overrides}
  changed = sorted(k for k in named if base.get(k) != mine.get(k))
  return variant + ''.join(f'-{k}={_text(mine[k])}' for k in changed)


def row_run_name(row: Row, sets: Sequence[str] = ()) -> str:
  if row.members:
    return '+'.join(row_run_name(m, sets) for m in row.members)
  return setting_name(row.variant, row.overrides, sets)


def plan(studies: Sequence[str], seeds: Sequence[int],
         sets: Sequence[str] = ()) -> Tuple[List[Run], Dict[str, List[Tuple[Row, str]]]]:
  """``(runs, tables)``: every run to do, seeds outermost, each setting once per seed
  (late fusions after their members); and each study's rows with their run names."""
  tables = {s: [(row, row_run_name(row, sets)) for row in rows]
            for s, rows in select(studies).items()}
  settings: Dict[str, Row] = {}
  fusions: Dict[str, Row] = {}
  for rows in tables.values():
    for row, name in rows:
      if row.members:
        fusions.setdefault(name, row)
        for m in row.members:
          settings.setdefault(row_run_name(m, sets), m)
      else:
        settings.setdefault(name, row)
  runs = []
  for seed in seeds:
    runs += [Run(name, r.variant, r.overrides, seed) for name, r in settings.items()]
    runs += [Run(name, 'ensemble', (), seed, tuple(row_run_name(m, sets) for m in r.members))
             for name, r in fusions.items()]
  return runs, tables


# ----------------------------------------------------------------- runs
def run_dir(workdir: str, name: str, seed: int) -> str:
  return fs.join(workdir, 'runs', name, f'seed{seed}')


def group_means(per_class: Sequence[Optional[float]], class_names: Sequence[str],
                modalities: Mapping[str, str]) -> Dict[str, float]:
  """Mean top-1 of the visual, audio and sync (audiovisual) classes of one run."""
  acc = [float('nan') if a is None else a for a in per_class]
  groups = quickstart.modality_groups(class_names, dict(modalities), {'run': acc})
  return {key: float(groups[m]['mean']['run']) for m, key in _GROUPS.items() if m in groups}


def summarize(metrics: Mapping, class_names, modalities) -> Dict[str, float]:
  """The reported numbers of one evaluated run: top-1 and the class-group means."""
  out = {'top1': float(metrics['top1'])}
  out.update(group_means(metrics['per_class_accuracy'], class_names, modalities))
  return out


def _check_same_settings(config: ml_collections.ConfigDict, directory: str) -> None:
  """A run is reused only with the settings it was made with (``config.json``)."""
  path = fs.join(directory, 'config.json')
  if not fs.exists(path):
    return
  old = trees.flatten(fs.read_json(path), '.')
  new = trees.flatten(json.loads(config.to_json_best_effort()), '.')
  changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  if changed:
    raise UserError(f'{path}: this run was made with other settings ({", ".join(changed[:4])}'
                    f'{", ..." if len(changed) > 4 else ""}); give another --workdir')


def train_and_eval(config: ml_collections.ConfigDict, directory: str) -> Tuple[dict, float]:
  """Trains (resuming a cut run) and evaluates one run in this process; reuses an
  existing evaluation. Returns ``(metrics, seconds spent now)``."""
  _check_same_settings(config, directory)
  results = fs.join(directory, 'eval_results.json')
  if fs.exists(results):
    return fs.read_json(results), 0.0
  started = time.time()
  trainer.train_and_evaluate(config, directory)
  metrics = evaluator.run_eval_mode(config, directory)
  # Each run builds its own model and jitted functions; the persistent cache
  # keeps their compilations, the in-memory caches need not keep them all.
  jax.clear_caches()
  return metrics, time.time() - started


def late_fusion(directory: str, member_dirs: Sequence[str]) -> dict:
  """The mean of the members' per-video scores (tools/ensemble.py), written as an
  evaluation into ``directory``."""
  metrics, arrays, _ = ensemble.ensemble(member_dirs)
  evaluator.write_results(directory, metrics, arrays, {'runs': list(member_dirs)})
  return metrics


def make_data(workdir: str, num_videos: int) -> str:
  """The quickstart's data stage under ``workdir`` (skipped where it is there); the shards."""
  log = fs.join(workdir, 'ablate_data.log')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=os.pathsep.join(
      filter(None, (_REPO, os.environ.get('PYTHONPATH')))))

  def run_command(cmd: List[str]) -> None:
    print('$ ' + ' '.join(cmd), flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    fs.append_text(log, f'$ {" ".join(cmd)}\n{result.stdout}{result.stderr}\n')
    if result.returncode != 0:
      raise UserError(f'{cmd[2]} failed with exit code {result.returncode}: '
                      f'{errors.last_line(result.stderr)} (whole output: {log})')

  _, shards = quickstart.make_data(workdir, num_videos, 0, run_command)
  made = fs.read_json(fs.join(workdir, 'videos', 'classes.json'))['settings']
  if made['num_videos_per_class'] != num_videos:
    raise UserError(f'{workdir}: its data has {made["num_videos_per_class"]} videos per class, '
                    f'not --num_videos {num_videos}; give another --workdir')
  return shards


# ------------------------------------------------------------ aggregation
def aggregate(results: Mapping[str, Mapping[int, Mapping[str, float]]],
              tables: Mapping[str, Sequence[Tuple[Row, str]]],
              seeds: Sequence[int]) -> Dict[str, dict]:
  """Each study's rows: the seeds' values, their mean and sample standard deviation
  (``None`` with fewer than two seeds) of every metric. ``results[run][seed]`` holds
  the numbers of one evaluated run; a row lists only the seeds it has."""
  out = {}
  for study, rows in tables.items():
    entries = []
    for row, name in rows:
      done = [s for s in seeds if s in results.get(name, {})]
      entry = {'label': row.label, 'run': name, 'seeds': done, 'paper_top1': row.paper_top1,
               'paper_ref': row.paper_ref, 'mean': {}, 'std': {}, 'values': {}}
      for key, _ in METRICS:
        values = [results[name][s][key] for s in done if key in results[name][s]]
        if not values:
          continue
        entry['values'][key] = values
        entry['mean'][key] = float(np.mean(values))
        entry['std'][key] = float(np.std(values, ddof=1)) if len(values) > 1 else None
      entries.append(entry)
    out[study] = {'title': STUDIES[study][0], 'rows': entries}
  return out


def _cell(entry: dict, key: str) -> str:
  if key not in entry['mean']:
    return '-'
  text = f'{100 * entry["mean"][key]:.1f}'
  std = entry['std'].get(key)
  return text + (f' ± {100 * std:.1f}' if std is not None else '')


def markdown(studies: Mapping[str, dict]) -> str:
  """One markdown table per study (top-1 and class-group means, %, mean ± sample std)."""
  parts = []
  for study in studies.values():
    lines = [f'### {study["title"]}', '',
             '| setting | seeds | ' + ' | '.join(t for _, t in METRICS)
             + ' | paper top-1 (Kinetics-400) |',
             '|---|---:|' + '---:|' * len(METRICS) + '---|']
    for e in study['rows']:
      paper = f'{e["paper_top1"]:.1f} ({e["paper_ref"]})' if e['paper_top1'] is not None else '-'
      lines.append(f'| {e["label"]} | {len(e["seeds"])} | '
                   + ' | '.join(_cell(e, k) for k, _ in METRICS) + f' | {paper} |')
    parts.append('\n'.join(lines))
  return '\n\n'.join(parts)


def plot(studies: Mapping[str, dict], path: str) -> Optional[str]:
  """The bar plot (studies/plots.py); None when matplotlib is not installed."""
  try:
    # Optional: matplotlib is the [plots] extra.
    import matplotlib  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print('matplotlib is not installed (pip install -e .[plots]): no plot.')
    return None
  from avslowfast_jax.studies import plots  # pylint: disable=g-import-not-at-top  # needs it
  panels = {s['title']: [(e['label'], e['mean'], e['std']) for e in s['rows'] if e['mean']]
            for s in studies.values()}
  return plots.plot_ablation_bars(panels, METRICS, path)


# ------------------------------------------------------------------ driver
def run(workdir: str, seeds: Sequence[int], steps: int, num_videos: int,
        studies: Sequence[str], sets: Sequence[str] = ()) -> dict:
  """Makes the data, does every run not yet evaluated, writes the outputs; returns
  what ``WORKDIR/ablate.json`` holds."""
  started = time.time()
  runs, tables = plan(studies, seeds, sets)
  fs.makedirs(workdir)
  shards = make_data(workdir, num_videos)
  class_names = input_pipeline.dataset_info(shards)['label_map']
  modalities = quickstart.class_modalities(fs.join(workdir, 'videos'))
  results: Dict[str, Dict[int, Dict[str, float]]] = {}
  done = []
  out = {'settings': {'seeds': list(seeds), 'steps': steps, 'num_videos': num_videos,
                      'studies': list(studies), 'set': list(sets), 'cpu_count': os.cpu_count()}}
  for i, r in enumerate(runs):
    directory = run_dir(workdir, r.name, r.seed)
    print(f'[{i + 1}/{len(runs)}] {r.name} seed {r.seed}', flush=True)
    if r.members:
      metrics, seconds = late_fusion(directory, [run_dir(workdir, m, r.seed)
                                                 for m in r.members]), 0.0
    else:
      config = run_config(r.variant, r.overrides, r.seed, steps, shards, sets)
      metrics, seconds = train_and_eval(config, directory)
    numbers = summarize(metrics, class_names, modalities)
    results.setdefault(r.name, {})[r.seed] = numbers
    done.append({**dataclasses.asdict(r), 'dir': directory, 'seconds': round(seconds, 1),
                 **numbers})
    how = ('late fusion' if r.members else f'{seconds:.0f} s' if seconds else
           'already evaluated')
    print(f'  top-1 {100 * numbers["top1"]:.1f}  ({how})', flush=True)
    out.update(runs=done, studies=aggregate(results, tables, seeds),
               minutes=round((time.time() - started) / 60, 2))
    fs.write_json(fs.join(workdir, 'ablate.json'), out)
  out['markdown'] = fs.join(workdir, 'ablate.md')
  fs.write_text(out['markdown'], markdown(out['studies']) + '\n')
  out['plot'] = plot(out['studies'], fs.join(workdir, 'ablate.png'))
  fs.write_json(fs.join(workdir, 'ablate.json'), out)
  return out


def _seeds(texts: Sequence[str]) -> List[int]:
  try:
    seeds = [int(t) for t in texts]
  except ValueError:
    raise UserError(f'--seeds {" ".join(texts)}: expected non-negative integers, e.g. 0 1 2'
                    ) from None
  if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
    raise UserError(f'--seeds {" ".join(texts)}: expected distinct non-negative integers')
  return seeds


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog='python -m avslowfast_jax.studies.ablate',
                                   description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--seeds', nargs='+', default=['0', '1', '2'])
  parser.add_argument('--steps', type=int, default=400, help='training steps per run (default 400)')
  parser.add_argument('--num_videos', type=int, default=40,
                      help='synthetic videos per class, 80%% train, 20%% validation (default 40)')
  parser.add_argument('--studies', nargs='+', default=list(STUDIES),
                      help=f'some of {", ".join(STUDIES)}; STUDY:ROW,ROW runs some rows '
                      '(e.g. drop_pathway:0.5,0.8), STUDY:all every row')
  parser.add_argument('--set', nargs='*', default=[], metavar='FIELD=VALUE',
                      help='config overrides for every run, e.g. model.width=8')
  parser.add_argument('--dry_run', action='store_true',
                      help='check the arguments, print the runs, and run nothing')
  args = parser.parse_args(argv)
  seeds = _seeds(args.seeds)
  if args.steps < 1:
    raise UserError(f'--steps {args.steps}: expected a positive number of steps')
  if args.num_videos < 2:
    raise UserError(f'--num_videos {args.num_videos}: expected at least 2 videos per class '
                    '(one for training, one for validation)')
  runs, _ = plan(args.studies, seeds, args.set)  # bad studies or --set fields fail first
  if args.dry_run:
    for r in runs:
      print(f'seed {r.seed}: {r.name}')
    print(f'{len(runs)} runs of {args.steps} steps into {args.workdir}; nothing was run')
    return {'runs': [dataclasses.asdict(r) for r in runs]}

  logging.set_verbosity(logging.WARNING)
  host_memory.run_cpu_computations_on_calling_thread()  # before the CPU backend exists
  if jax.default_backend() == 'cpu':
    host_memory.keep_freed_memory()
  host_memory.serve_from_heap(cli.load_config_file(quickstart.CONFIG).data.malloc_mmap_threshold)
  tf.config.set_visible_devices([], 'GPU')  # tf.data must not grab an accelerator
  workdir = args.workdir if fs.is_remote(args.workdir) else os.path.abspath(args.workdir)
  # Seeds of one setting compile the same programs: the persistent cache has them.
  jax.config.update('jax_compilation_cache_dir', fs.join(workdir, 'jax_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  out = run(workdir, seeds, args.steps, args.num_videos, args.studies, args.set)
  print(markdown(out['studies']))
  print(f'({out["minutes"]} minutes; {out["markdown"]}, {fs.join(workdir, "ablate.json")}'
        + (f', {out["plot"]}' if out['plot'] else '') + ')')
  return out


if __name__ == '__main__':
  errors.run(main)
