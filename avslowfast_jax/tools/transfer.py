r"""Transfer of a pretrained backbone to UCF101 / HMDB51 on the three official splits.

  python -m avslowfast_jax.tools.transfer --pretrained /tmp/ssl_8x8 --dataset ucf101 \
      --protocol linear --data_dir '/data/ucf101_split{split}' --workdir /tmp/ucf_linear

Protocols (paper appendix A.1 / A.8; configs/transfer_common.py):

- ``linear``: the paper's linear probe, the backbone frozen (inference mode,
  running BN statistics, no gradient), only the final linear layer trained
  by the training loop (320k iterations at batch 64, lr 0.01, cosine);
- ``finetune``: all layers trained (configs/ucf101.py, configs/hmdb51.py);
- ``cached``: the linear probe on cached features. The frozen backbone's
  pooled features of ``--cached_epochs`` epochs of training views (the same
  random crops and flips the training loop draws) are computed once, then
  the same linear layer is trained on them with the same optimizer and
  schedule, in seconds; the test views are scored as in an evaluation.

Each split's run is ``WORKDIR/split<N>``; the result is each split's metrics
and the mean over the splits, written to ``WORKDIR/transfer_results.json``
and printed as a table. The model (architecture and clip sampling) is taken
from ``PRETRAINED/config.json`` (written by the pretraining run); loading a
checkpoint of another architecture is an error listing what does not match,
and a pretext head in the checkpoint is dropped (the report says so).

``--evidence`` runs the label-free pretraining study on the built-in
synthetic dataset instead (README, "Self-supervised pretraining and transfer"):

  python -m avslowfast_jax.tools.transfer --evidence --workdir /tmp/ssl_evidence
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import math
import os
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from avslowfast_jax import clip_finish, host_memory, inference
from avslowfast_jax.evaluation import evaluator
from avslowfast_jax.models.heads import classifier_init
from avslowfast_jax.train import checkpoints as ckpt_lib
from avslowfast_jax.train import losses
from avslowfast_jax.train import optimizer as optimizer_lib
from avslowfast_jax.train import schedules
from avslowfast_jax.train import setup as setup_lib
from avslowfast_jax.train import trainer
from configs import hmdb51, pretrain, transfer_common, ucf101
from data_pipelines import errors, fs, input_pipeline
from data_pipelines.errors import UserError

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASETS = {'ucf101': ucf101, 'hmdb51': hmdb51}
PROTOCOLS = ('linear', 'finetune', 'cached')
# Fields of the pretraining run's config that define the backbone and what it sees.
_MODEL_KEEP = ('num_classes', 'num_nouns', 'dropout_rate', 'freeze_bn', 'conv_impl', 'remat',
               'dtype')
_DATA_FIELDS = ('num_frames', 'sampling_rate')
_AUDIO_FIELDS = ('num_frames', 'num_mels')


# ------------------------------------------------------------------ configs
def set_fields(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
  """Applies ``a.b.c=value`` overrides (Python literals, else strings) to ``config``."""
  for item in overrides:
    key, sep, text = item.partition('=')
    if not sep:
      raise UserError(f'--set {item!r}: expected FIELD=VALUE, e.g. train.total_steps=1000')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    node = config
    *parents, leaf = key.split('.')
    try:
      for p in parents:
        node = node[p]
      old = node[leaf]
    except (KeyError, AttributeError):
      raise UserError(f'--set {item!r}: the config has no field {key!r}') from None
    node[leaf] = tuple(value) if isinstance(old, tuple) and isinstance(value, list) else value


def adopt_backbone(config: ml_collections.ConfigDict, pretrained_config: Dict[str, Any]) -> None:
  """Takes the backbone (model fields but the head's) and clip sampling of a pretraining run."""
  model = pretrained_config.get('model', {})
  for key, value in model.items():
    if key in config.model and key not in _MODEL_KEEP:
      config.model[key] = tuple(value) if isinstance(value, list) else value
  data = pretrained_config.get('data', {})
  for key in _DATA_FIELDS:
    if key in data:
      config.data[key] = data[key]
  for key in _AUDIO_FIELDS:
    if key in data.get('audio', {}):
      config.data.audio[key] = data['audio'][key]


def read_run_config(pretrained: str) -> Dict[str, Any]:
  """The ``config.json`` a training run wrote into its workdir ({} for a bare checkpoint)."""
  path = fs.join(pretrained, 'config.json')
  return fs.read_json(path) if fs.exists(path) else {}


def split_config(dataset: str, protocol: str, split: int, pretrained: str, data_dir: str,
                 overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config of one split's run: the dataset's protocol variant, the pretrained backbone."""
  module = DATASETS[dataset]
  variant = f'{"linear" if protocol == "cached" else protocol}_split{split}'
  config = module.get_config(variant)
  adopt_backbone(config, read_run_config(pretrained))
  config.data.data_dir = data_dir
  config.train.init_from = pretrained
  set_fields(config, overrides)
  return config


# ------------------------------------------------------------ backbones
def backbone_variables(config, model, pretrained: Optional[str], seed: int = 0):
  """``(variables, report)``: a fresh model's variables, with ``pretrained``'s backbone
  loaded (strictly, head dropped) unless ``pretrained`` is None (random init)."""
  variables = jax.device_get(inference.init_variables(config, model, jax.random.PRNGKey(seed)))
  report = None
  if pretrained:
    params, stats, report = ckpt_lib.load_pretrained(
        pretrained, variables['params'], variables['batch_stats'], config.train.init_skip,
        strict=True)
    variables = {'params': params, 'batch_stats': stats}
  return variables, report


_FEATURE_FNS: Dict[int, Any] = {}


def _feature_fn(model):
  """The jitted pooled-feature function of ``model`` (one per model: traced once)."""
  if id(model) not in _FEATURE_FNS:
    def features(variables, inputs):
      _, aux = model.apply(variables, inputs, train=False, drop_audio=False)
      return aux['pool5'].astype(jnp.float32)
    _FEATURE_FNS[id(model)] = (model, jax.jit(features))
  return _FEATURE_FNS[id(model)][1]


def train_view_features(config, model, variables, epochs: float):
  """``(features [N, D], labels [N])`` of ``epochs`` epochs of training views, drawn
  (random scale, crop, flip) as the training loop draws them, through the frozen backbone."""
  features = _feature_fn(model)
  n_train = setup_lib.num_train_examples(config)
  batch = config.train.batch_size
  data = input_pipeline.create_train_iterator(config, config.data.data_dir,
                                              config.data.train_split, batch, seed=config.seed)
  finish = jax.jit(functools.partial(clip_finish.finish_clips, config))
  xs, ys = [], []
  for _ in range(max(1, math.ceil(epochs * n_train / batch))):
    b = next(data)
    if 'audio_pcm' in b:  # data.finish_on_device: raw windows and audio, finished here
      b = finish(b)
    xs.append(np.asarray(features(variables, inference.model_inputs(config, b))))
    ys.append(np.asarray(b['label']))
  return np.concatenate(xs), np.concatenate(ys)


def eval_view_features(config, model, variables, split: Optional[str] = None):
  """Every evaluation view of ``split`` (default ``data.eval_split``): a dict of
  ``features``, ``label``, ``video_index``, ``valid``."""
  features = _feature_fn(model)
  data = input_pipeline.create_eval_iterator(config, config.data.data_dir,
                                             split or config.data.eval_split,
                                             config.eval.batch_size)
  out: Dict[str, List[np.ndarray]] = {'features': [], 'label': [], 'video_index': [], 'valid': []}
  for b in data:
    out['features'].append(np.asarray(features(variables, inference.model_inputs(config, b))))
    for key in ('label', 'video_index'):
      out[key].append(np.asarray(b[key]))
    out['valid'].append(np.asarray(b.get('valid', np.ones(len(b['label']), np.float32))))
  return {k: np.concatenate(v) for k, v in out.items()}


# ---------------------------------------------------------- linear layer
def train_linear(features: np.ndarray, labels: np.ndarray, num_classes: int,
                 train: ml_collections.ConfigDict, seed: int = 0):
  """Trains ``logits = features @ kernel + bias`` on cached features with the config's
  optimizer, lr schedule, batch and step count (the linear probe's); returns
  ``({'kernel', 'bias'}, final mean loss over the last 1% of steps)``."""
  x = jnp.asarray(features, jnp.float32)
  y = jnp.asarray(labels, jnp.int32)
  if int(jnp.min(y)) < 0:
    raise UserError('the training views include unlabelled clips: a linear probe needs labels')
  plan = schedules.make_plan(train, len(x))
  lr_fn = schedules.create_learning_rate_fn(train.schedule, plan)
  tx = optimizer_lib.create_optimizer(train, lr_fn)
  key = jax.random.PRNGKey(seed)
  params = {'head': {'kernel': classifier_init(key, (x.shape[1], num_classes), jnp.float32),
                     'bias': jnp.zeros((num_classes,), jnp.float32)}}
  batch = train.batch_size
  steps = plan.total_steps
  tail = max(1, steps // 100)

  def loss_fn(p, idx):
    logits = x[idx] @ p['head']['kernel'] + p['head']['bias']
    return losses.softmax_cross_entropy(logits, y[idx], num_classes)

  @jax.jit
  def run(params):
    def body(i, carry):
      p, opt, tail_sum = carry
      idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, x.shape[0])
      loss, grads = jax.value_and_grad(loss_fn)(p, idx)
      updates, opt = tx.update(grads, opt, p)
      tail_sum = tail_sum + jnp.where(i >= steps - tail, loss, 0.0)
      return optax.apply_updates(p, updates), opt, tail_sum
    p, _, tail_sum = jax.lax.fori_loop(0, steps, body, (params, tx.init(params), 0.0))
    return p, tail_sum / tail

  params, final_loss = run(params)
  return jax.device_get(params['head']), float(final_loss)


def score_linear(config, task, head, views) -> dict:
  """The evaluation metrics of a linear layer on cached evaluation views (task aggregation)."""
  logits = views['features'] @ head['kernel'] + head['bias']
  evaluation = task.evaluation()
  evaluation.add({'scores': np.asarray(task.scores(jnp.asarray(logits))),
                  'video_index': views['video_index'], 'valid': views['valid'],
                  'label': views['label']})
  metrics, _ = evaluation.result()
  return metrics


def cached_linear_probe(config, pretrained: Optional[str], epochs: float, seed: int = 0,
                        model_task=None) -> dict:
  """The linear probe on cached features of ``pretrained``'s frozen backbone (None: a
  randomly initialised backbone with seed ``seed``); returns the evaluation metrics
  with timings, the final training loss and the loading report."""
  started = time.time()
  model, task = model_task or inference.build(config)
  variables, report = backbone_variables(config, model, pretrained, seed)
  variables = jax.device_put(variables)
  x, y = train_view_features(config, model, variables, epochs)
  views = eval_view_features(config, model, variables)
  extracted = time.time()
  head, final_loss = train_linear(x, y, config.model.num_classes, config.train, seed)
  trained = time.time()
  metrics = score_linear(config, task, head, views)
  metrics.update(train_views=int(len(x)), feature_dim=int(x.shape[1]),
                 final_train_loss=final_loss,
                 extract_seconds=round(extracted - started, 1),
                 linear_train_seconds=round(trained - extracted, 1))
  if report is not None:
    metrics['init_report'] = ckpt_lib.describe_report(report)
  return metrics


def trained_probe(config, workdir: str) -> dict:
  """The linear probe or fine-tuning through the training loop, then the evaluation."""
  started = time.time()
  trainer.train_and_evaluate(config, workdir)
  trained = time.time()
  metrics = evaluator.run_eval_mode(config, workdir)
  metrics = {k: v for k, v in metrics.items() if np.isscalar(v)}
  metrics.update(train_seconds=round(trained - started, 1),
                 eval_seconds=round(time.time() - trained, 1))
  report_path = fs.join(workdir, 'init_report.json')
  if fs.exists(report_path):
    metrics['init_report'] = fs.read_json(report_path)['summary']
  return metrics


# ------------------------------------------------------------ the driver
def run_protocol(dataset: str, protocol: str, pretrained: str, data_dir: str, workdir: str,
                 splits: Sequence[int] = transfer_common.SPLITS, overrides: Sequence[str] = (),
                 cached_epochs: float = 4.0) -> dict:
  """Runs ``protocol`` on each split; returns ``{'splits': {N: metrics}, 'mean': {...}}``."""
  if dataset not in DATASETS:
    raise UserError(f'--dataset {dataset!r}: expected one of {sorted(DATASETS)}')
  if protocol not in PROTOCOLS:
    raise UserError(f'--protocol {protocol!r}: expected one of {PROTOCOLS}')
  if '{split}' not in data_dir and len(splits) > 1:
    raise UserError(f'--data_dir {data_dir!r}: give a pattern with {{split}} (one prepared '
                    'folder per official split, e.g. /data/ucf101_split{split})')
  results = {}
  for split in splits:
    split_dir = data_dir.format(split=split)
    if not fs.exists(fs.join(split_dir, 'shards.json')):
      raise UserError(f'{split_dir}: no prepared split {split} (shards.json missing); prepare it '
                      f'with python -m data_pipelines.prepare --dataset {dataset} --fold {split}')
    config = split_config(dataset, protocol, split, pretrained, split_dir, overrides)
    run_dir = fs.join(workdir, f'split{split}')
    if protocol == 'cached':
      metrics = cached_linear_probe(config, pretrained, cached_epochs, config.seed)
    else:
      metrics = trained_probe(config, run_dir)
    results[split] = metrics
    for line in metrics.get('init_report', []):
      print(f'split {split}: init_from: {line}')
    print(f'split {split}: top-1 {100 * metrics["top1"]:.1f}', flush=True)
  keys = [k for k in ('top1', 'top5') if all(k in m for m in results.values())]
  out = {'dataset': dataset, 'protocol': protocol, 'pretrained': pretrained,
         'splits': results, 'mean': {k: float(np.mean([m[k] for m in results.values()]))
                                     for k in keys}}
  fs.makedirs(workdir)
  fs.write_json(fs.join(workdir, 'transfer_results.json'), out)
  return out


def protocol_table(result: dict) -> str:
  """Markdown table: top-1 / top-5 of each split and the mean."""
  rows = ['| split | top-1 | top-5 |', '|---|---:|---:|']
  for split, m in result['splits'].items():
    rows.append(f'| {split} | {100 * m["top1"]:.1f} | {100 * m.get("top5", float("nan")):.1f} |')
  mean = result['mean']
  rows.append(f'| mean | {100 * mean.get("top1", float("nan")):.1f} | '
              f'{100 * mean.get("top5", float("nan")):.1f} |')
  return '\n'.join(rows)


# --------------------------------------------------------------- evidence
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
    raise UserError(f'preparing {raw} failed:\n{result.stderr[-2000:]}')
  return shards


def evidence_probe_config(pretrain_config, probe_steps: int):
  """The linear probe of the evidence run: the paper's probe (lr 0.01, batch 64, cosine)
  on the synthetic labels, ``probe_steps`` iterations, on the pretraining run's model."""
  c = ml_collections.ConfigDict(pretrain_config.to_dict())
  transfer_common.set_protocol(c, 'linear', finetune_steps=0, finetune_lr=0.0)
  c.model.num_classes = input_pipeline.dataset_info(c.data.data_dir)['num_classes']
  c.train.optimizer = 'sgd'
  c.train.total_steps = probe_steps
  c.train.eval_every_steps = -1
  c.train.checkpoint_every_steps = probe_steps
  c.train.log_every_steps = max(1, probe_steps // 10)
  c.data.eval_split = 'validation'
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
      base = pretrain.get_config('synthetic')
      base.data.data_dir = shards
      base.seed = seed
      base.train.total_steps = pretrain_steps
      if name != 'random_init':
        set_fields(base, PRETEXTS[name][1])
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
        probe_model = inference.build(probe)
      metrics = cached_linear_probe(probe, pretrained, cached_epochs, seed, probe_model)
      out['probe'][name][seed] = metrics
      print(f'{name} seed {seed}: cached linear probe top-1 {100 * metrics["top1"]:.1f}',
            flush=True)
      fs.write_json(results_path, out)
  if paper_probe_steps > 0:
    seed = seeds[0]
    base = pretrain.get_config('synthetic')
    base.data.data_dir = shards
    base.seed = seed
    run_dir = fs.join(workdir, 'pretrain', f'avs_rotation_seed{seed}')
    probe = evidence_probe_config(base, paper_probe_steps)
    probe.train.init_from = run_dir
    paper = trained_probe(probe, fs.join(workdir, 'paper_probe'))
    cached = cached_linear_probe(probe, run_dir, cached_epochs, seed, probe_model)
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


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog='python -m avslowfast_jax.tools.transfer',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--pretrained', help='pretraining workdir or checkpoint (train.init_from)')
  parser.add_argument('--dataset', choices=sorted(DATASETS))
  parser.add_argument('--protocol', choices=PROTOCOLS, default='linear')
  parser.add_argument('--data_dir', help="prepared folder per split, with '{split}' for 1, 2, 3")
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--splits', type=int, nargs='+', default=list(transfer_common.SPLITS))
  parser.add_argument('--set', nargs='*', default=[], metavar='FIELD=VALUE',
                      help='config overrides, e.g. train.total_steps=20000')
  parser.add_argument('--cached_epochs', type=float, default=4.0,
                      help='epochs of training views the cached probe extracts')
  parser.add_argument('--evidence', action='store_true',
                      help='run the study on the built-in synthetic data instead')
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--pretrain_steps', type=int, default=200)
  parser.add_argument('--probe_steps', type=int, default=2000)
  parser.add_argument('--paper_probe_steps', type=int, default=150,
                      help='steps of the training-loop probe compared with the cached one '
                      '(0: skip)')
  parser.add_argument('--videos_per_class', type=int, default=16)
  parser.add_argument('--pretexts', nargs='+', default=list(PRETEXTS), choices=list(PRETEXTS))
  args = parser.parse_args(argv)

  logging.set_verbosity(logging.WARNING)
  host_memory.run_cpu_computations_on_calling_thread()
  if jax.default_backend() == 'cpu':
    host_memory.keep_freed_memory()
  cache = os.path.join(os.path.abspath(args.workdir), 'jax_cache')
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  if args.evidence:
    out = run_evidence(args.workdir, args.seeds, args.pretrain_steps, args.probe_steps,
                       args.cached_epochs, args.videos_per_class, args.paper_probe_steps,
                       args.pretexts)
    print(evidence_table(out))
    print(f'({out["minutes"]} minutes; {args.workdir}/evidence.json)')
    return out
  for flag in ('pretrained', 'dataset', 'data_dir'):
    if not getattr(args, flag):
      parser.error(f'--{flag} is required (or --evidence)')
  out = run_protocol(args.dataset, args.protocol, args.pretrained, args.data_dir, args.workdir,
                     args.splits, args.set, args.cached_epochs)
  print(protocol_table(out))
  print(f'({args.workdir}/transfer_results.json)')
  return out


if __name__ == '__main__':
  errors.run(main)
