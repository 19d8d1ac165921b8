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
(rewritten as each split finishes) and printed as a table. Every split's
folder is checked first: prepared, and of the dataset's class count (101 or
51). The model (architecture and clip sampling) is taken from
``PRETRAINED/config.json`` (written by the pretraining run); loading a
checkpoint of another architecture is an error listing what does not match,
and a pretext head in the checkpoint is dropped (the report says so).
``--print_main_commands`` prints each split's run as a ``python -m
avslowfast_jax.main`` command with that model as ``--config`` overrides (the
configs/ucf101.py and configs/hmdb51.py variants are of the paper's R50
models: a smaller pretrained model needs those overrides).

``--protocol cached --normalise zscore`` standardises the features before the
linear layer (the self-supervised evidence's probe; the default ``none`` is
the paper's).

"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax import cli, clip_finish, host_memory, model_builder
from avslowfast_jax.evaluation import evaluator
from avslowfast_jax.models.heads import classifier_init
from avslowfast_jax.losses import classification as losses
from avslowfast_jax.train import optimizer as optimizer_lib
from avslowfast_jax.train import schedules
from avslowfast_jax.train import setup as setup_lib
from avslowfast_jax.train import trainer
from data_pipelines import errors, fs, input_pipeline
from data_pipelines.errors import UserError

DATASETS = {'ucf101': 'configs/ucf101.py', 'hmdb51': 'configs/hmdb51.py'}
# The official splits of UCF101 and HMDB51 (configs/transfer_common.py).
SPLITS = (1, 2, 3)
PROTOCOLS = ('linear', 'finetune', 'cached')
# Fields of the pretraining run's config that define the backbone and what it sees.
_MODEL_KEEP = ('num_classes', 'num_nouns', 'dropout_rate', 'freeze_bn', 'conv_impl', 'remat',
               'dtype')
_DATA_FIELDS = ('num_frames', 'sampling_rate')
_AUDIO_FIELDS = ('num_frames', 'num_mels')


# ------------------------------------------------------------------ configs
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
  variant = f'{"linear" if protocol == "cached" else protocol}_split{split}'
  config = cli.project_config(DATASETS[dataset], variant)
  adopt_backbone(config, read_run_config(pretrained))
  config.data.data_dir = data_dir
  config.train.init_from = pretrained
  cli.set_fields(config, overrides)
  return config


# ------------------------------------------------------------ backbones
def backbone_variables(config, model, pretrained: Optional[str], seed: int = 0):
  """``(variables, report)``: a fresh model's variables, with ``pretrained``'s backbone
  loaded (strictly, head dropped) unless ``pretrained`` is None (random init)."""
  variables = jax.device_get(model_builder.init_variables(config, model, jax.random.PRNGKey(seed)))
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


def train_view_features(config, model, variables, epochs: float, with_videos: bool = False):
  """``(features [N, D], labels [N])`` of ``epochs`` epochs of training views, drawn
  (random scale, crop, flip) as the training loop draws them, through the frozen backbone;
  ``with_videos``: also each view's ``video_index`` [N]."""
  features = _feature_fn(model)
  n_train = setup_lib.num_train_examples(config)
  batch = config.train.batch_size
  data = input_pipeline.create_train_iterator(config, config.data.data_dir,
                                              config.data.train_split, batch, seed=config.seed)
  finish = jax.jit(functools.partial(clip_finish.finish_clips, config))
  xs, ys, vs = [], [], []
  for _ in range(max(1, math.ceil(epochs * n_train / batch))):
    b = next(data)
    if 'audio_pcm' in b:  # data.finish_on_device: raw windows and audio, finished here
      b = finish(b)
    xs.append(np.asarray(features(variables, model_builder.model_inputs(config, b))))
    ys.append(np.asarray(b['label']))
    vs.append(np.asarray(b['video_index']))
  out = np.concatenate(xs), np.concatenate(ys)
  return (*out, np.concatenate(vs)) if with_videos else out


def eval_view_features(config, model, variables, split: Optional[str] = None):
  """Every evaluation view of ``split`` (default ``data.eval_split``): a dict of
  ``features``, ``label``, ``video_index``, ``valid``."""
  features = _feature_fn(model)
  data = input_pipeline.create_eval_iterator(config, config.data.data_dir,
                                             split or config.data.eval_split,
                                             config.eval.batch_size)
  out: Dict[str, List[np.ndarray]] = {'features': [], 'label': [], 'video_index': [], 'valid': []}
  for b in data:
    out['features'].append(np.asarray(features(variables, model_builder.model_inputs(config, b))))
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


# ------------------------------------------------ the normalised probe
# What the cached probe does to the features before the linear layer: 'none' (the
# paper's probe) or 'zscore' (each dimension standardised with the training features'
# mean and standard deviation, a parameter-free normalisation as in the linear
# evaluation of the self-supervised literature: a backbone is not judged by the scale
# of its features, which a fixed learning rate would otherwise reward or punish).
NORMALISATIONS = ('none', 'zscore')


def feature_statistics(features: np.ndarray, normalise: str = 'zscore'):
  """``(mean, std)`` that standardise ``features`` [N, D] (``'none'``: 0 and 1). A dimension
  that hardly varies gets a floor of 1e-3 times the typical std, so that it is not blown up
  (the floor is relative: scaling every feature scales nothing after normalisation)."""
  if normalise not in NORMALISATIONS:
    raise UserError(f'feature normalisation {normalise!r}: expected one of {NORMALISATIONS}')
  x = np.asarray(features, np.float64)
  if normalise == 'none':
    return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
  var = x.var(axis=0)
  std = np.sqrt(var + 1e-6 * max(float(var.mean()), 1e-30))
  return x.mean(axis=0).astype(np.float32), std.astype(np.float32)


def held_out_videos(labels: np.ndarray, video_index: np.ndarray, fraction: float,
                    seed: int = 0) -> np.ndarray:
  """A mask of the rows whose video is held out: ``fraction`` of each class's videos (at
  least one, at most all but one), drawn with ``seed``; every view of a video falls on one
  side, so the held-out part measures generalisation to new videos."""
  rng = np.random.default_rng(seed)
  held = np.zeros(len(labels), bool)
  for label in np.unique(labels):
    videos = np.unique(video_index[labels == label])
    if len(videos) < 2:
      continue
    count = min(max(1, int(round(fraction * len(videos)))), len(videos) - 1)
    held |= np.isin(video_index, rng.choice(videos, count, replace=False)) & (labels == label)
  return held


def select_weight_decay(features, labels, video_index, num_classes: int,
                        train: ml_collections.ConfigDict, grid: Sequence[float],
                        held_out: float = 0.25, seed: int = 0):
  """The weight decay of ``grid`` whose linear layer, trained on the training features but a
  held-out ``held_out`` of the videos, scores best on those (top-1, then the lower
  cross-entropy); returns ``(weight decay, {weight decay: (top-1, loss)})``."""
  held = held_out_videos(labels, video_index, held_out, seed)
  scores = {}
  for wd in grid:
    config = ml_collections.ConfigDict(train.to_dict())
    config.weight_decay = float(wd)
    head, _ = train_linear(features[~held], labels[~held], num_classes, config, seed)
    logits = features[held] @ head['kernel'] + head['bias']
    loss = float(losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels[held]),
                                              num_classes))
    scores[float(wd)] = (float(np.mean(np.argmax(logits, -1) == labels[held])), loss)
  best = min(scores, key=lambda wd: (-scores[wd][0], scores[wd][1]))
  return best, scores


def score_linear(config, task, head, views) -> dict:
  """The evaluation metrics of a linear layer on cached evaluation views (task aggregation)."""
  logits = views['features'] @ head['kernel'] + head['bias']
  evaluation = task.evaluation()
  evaluation.add({'scores': np.asarray(task.scores(jnp.asarray(logits))),
                  'video_index': views['video_index'], 'valid': views['valid'],
                  'label': views['label']})
  metrics, arrays = evaluation.result()
  if np.ndim(arrays.get('labels')) == 1:  # single-label: the top-1 of each class too
    right = np.argmax(arrays['scores'], -1) == arrays['labels']
    metrics['per_class_top1'] = [float(np.mean(right[arrays['labels'] == c]))
                                 if np.any(arrays['labels'] == c) else None
                                 for c in range(config.model.num_classes)]
  return metrics


def cached_linear_probe(config, pretrained: Optional[str], epochs: float, seed: int = 0,
                        model_task=None, normalise: str = 'none',
                        weight_decays: Sequence[float] = (), held_out: float = 0.25,
                        variables=None) -> dict:
  """The linear probe on cached features of ``pretrained``'s frozen backbone (None: a
  randomly initialised backbone with seed ``seed``; ``variables``: these); returns the
  evaluation metrics with timings, the final training loss and the loading report.

  ``normalise``: ``'none'`` (the paper's probe) or ``'zscore'`` (the features standardised
  with the training features' statistics, :func:`feature_statistics`). ``weight_decays``:
  a grid of weight decays, one chosen on a held-out ``held_out`` of the training videos
  (:func:`select_weight_decay`), then the layer trained on all of them; empty: the
  config's ``train.weight_decay``."""
  started = time.time()
  model, task = model_task or model_builder.build(config)
  report = None
  if variables is None:
    variables, report = backbone_variables(config, model, pretrained, seed)
  variables = jax.device_put(variables)
  x, y, video_index = train_view_features(config, model, variables, epochs, with_videos=True)
  views = eval_view_features(config, model, variables)
  extracted = time.time()
  mean, std = feature_statistics(x, normalise)
  x = (x - mean) / std
  views['features'] = (views['features'] - mean) / std
  train = ml_collections.ConfigDict(config.train.to_dict())
  sweep = None
  if weight_decays:
    train.weight_decay, sweep = select_weight_decay(x, y, video_index, config.model.num_classes,
                                                    train, weight_decays, held_out, seed)
  head, final_loss = train_linear(x, y, config.model.num_classes, train, seed)
  trained = time.time()
  metrics = score_linear(config, task, head, views)
  metrics.update(train_views=int(len(x)), feature_dim=int(x.shape[1]),
                 final_train_loss=final_loss, normalise=normalise,
                 feature_scale=float(np.sqrt(np.mean(std.astype(np.float64) ** 2))),
                 extract_seconds=round(extracted - started, 1),
                 linear_train_seconds=round(trained - extracted, 1))
  if sweep is not None:
    metrics.update(weight_decay=float(train.weight_decay),
                   weight_decay_sweep={f'{wd:g}': {'held_out_top1': t, 'held_out_loss': l}
                                       for wd, (t, l) in sweep.items()})
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
def check_prepared_split(dataset: str, split: int, split_dir: str, num_classes: int) -> None:
  """A ``UserError`` unless ``split_dir`` is a prepared dataset of ``num_classes`` classes."""
  if not fs.exists(fs.join(split_dir, 'shards.json')):
    raise UserError(f'{split_dir}: no prepared split {split} (shards.json missing); prepare it '
                    f'with python -m data_pipelines.prepare --dataset {dataset} --fold {split}')
  found = input_pipeline.dataset_info(split_dir)['num_classes']
  if found != num_classes:
    raise UserError(f'{split_dir}: a prepared dataset of {found} classes, but --dataset '
                    f'{dataset} is {num_classes}-way (is it the right folder?)')


def run_protocol(dataset: str, protocol: str, pretrained: str, data_dir: str, workdir: str,
                 splits: Sequence[int] = SPLITS, overrides: Sequence[str] = (),
                 cached_epochs: float = 4.0, normalise: str = 'none') -> dict:
  """Runs ``protocol`` on each split; returns ``{'splits': {N: metrics}, 'mean': {...}}``.

  Every split's folder is checked (prepared, the dataset's class count) before any
  training; ``WORKDIR/transfer_results.json`` is rewritten as each split finishes, so a
  run cut short keeps the splits it finished."""
  if dataset not in DATASETS:
    raise UserError(f'--dataset {dataset!r}: expected one of {sorted(DATASETS)}')
  if protocol not in PROTOCOLS:
    raise UserError(f'--protocol {protocol!r}: expected one of {PROTOCOLS}')
  if '{split}' not in data_dir and len(splits) > 1:
    raise UserError(f'--data_dir {data_dir!r}: give a pattern with {{split}} (one prepared '
                    'folder per official split, e.g. /data/ucf101_split{split})')
  ckpt_lib.check_weights_source(pretrained, '--pretrained')  # before any model is built
  configs = {}
  for split in splits:
    split_dir = data_dir.format(split=split)
    configs[split] = split_config(dataset, protocol, split, pretrained, split_dir, overrides)
    check_prepared_split(dataset, split, split_dir, configs[split].model.num_classes)
  fs.makedirs(workdir)
  out = {'dataset': dataset, 'protocol': protocol, 'pretrained': pretrained, 'splits': {},
         'mean': {}}
  for split, config in configs.items():
    run_dir = fs.join(workdir, f'split{split}')
    if protocol == 'cached':
      metrics = cached_linear_probe(config, pretrained, cached_epochs, config.seed,
                                    normalise=normalise)
    else:
      metrics = trained_probe(config, run_dir)
    out['splits'][split] = metrics
    for line in metrics.get('init_report', []):
      print(f'split {split}: init_from: {line}')
    print(f'split {split}: top-1 {100 * metrics["top1"]:.1f}', flush=True)
    results = out['splits'].values()
    keys = [k for k in ('top1', 'top5') if all(k in m for m in results)]
    out['mean'] = {k: float(np.mean([m[k] for m in results])) for k in keys}
    fs.write_json(fs.join(workdir, 'transfer_results.json'), out)
  return out


def main_command(dataset: str, protocol: str, split: int, pretrained: str, data_dir: str,
                 workdir: str) -> str:
  """The ``python -m avslowfast_jax.main`` command of one split's run (protocol ``linear``
  or ``finetune``) that this tool runs: the dataset's config with the backbone and clip
  sampling of ``pretrained``'s ``config.json`` (:func:`adopt_backbone`) as overrides."""
  if protocol not in ('linear', 'finetune'):
    raise UserError(f'--protocol {protocol}: a main command exists for linear and finetune')
  variant = f'{protocol}_split{split}'
  plain = cli.project_config(DATASETS[dataset], variant)
  adopted = ml_collections.ConfigDict(plain.to_dict())
  adopt_backbone(adopted, read_run_config(pretrained))
  flags = []
  for section in ('model', 'data'):
    for key, value in adopted[section].items():
      if key == 'audio':
        flags += [f'--config.data.audio.{k}={v}' for k, v in value.items()
                  if v != plain.data.audio[k]]
      elif value != plain[section][key]:
        text = ','.join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        flags.append(f'--config.{section}.{key}={text}')
  lines = [f'python -m avslowfast_jax.main --config {DATASETS[dataset]}:{variant}',
           f'--workdir {workdir}', f'--config.data.data_dir={data_dir.format(split=split)}',
           f'--config.train.init_from={pretrained}', *flags]
  return ' \\\n    '.join(lines)


def protocol_table(result: dict) -> str:
  """Markdown table: top-1 / top-5 of each split and the mean."""
  rows = ['| split | top-1 | top-5 |', '|---|---:|---:|']
  for split, m in result['splits'].items():
    rows.append(f'| {split} | {100 * m["top1"]:.1f} | {100 * m.get("top5", float("nan")):.1f} |')
  mean = result['mean']
  rows.append(f'| mean | {100 * mean.get("top1", float("nan")):.1f} | '
              f'{100 * mean.get("top5", float("nan")):.1f} |')
  return '\n'.join(rows)


# ------------------------------------------------------------------ main
def set_up_process(workdir: str) -> None:
  """What a transfer command sets before its first computation: quiet logs, the CPU
  settings of ``avslowfast_jax.main``, and a compilation cache under ``workdir``."""
  logging.set_verbosity(logging.WARNING)
  host_memory.run_cpu_computations_on_calling_thread()
  if jax.default_backend() == 'cpu':
    host_memory.keep_freed_memory()
  cache = os.path.join(os.path.abspath(workdir), 'jax_cache')
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog='python -m avslowfast_jax.tools.transfer',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--pretrained', help='pretraining workdir or checkpoint (train.init_from)')
  parser.add_argument('--dataset', choices=sorted(DATASETS))
  parser.add_argument('--protocol', choices=PROTOCOLS, default='linear')
  parser.add_argument('--data_dir', help="prepared folder per split, with '{split}' for 1, 2, 3")
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--splits', type=int, nargs='+', default=list(SPLITS))
  parser.add_argument('--set', nargs='*', default=[], metavar='FIELD=VALUE',
                      help='config overrides, e.g. train.total_steps=20000')
  parser.add_argument('--cached_epochs', type=float, default=4.0,
                      help='epochs of training views the cached probe extracts')
  parser.add_argument('--normalise', choices=NORMALISATIONS, default='none',
                      help='--protocol cached: the features before the linear layer, as they '
                      'are (none, the paper\'s probe) or z-scored with the training features\' '
                      'statistics')
  parser.add_argument('--print_main_commands', action='store_true',
                      help='print, for each split, the python -m avslowfast_jax.main command of '
                      'its run (the backbone of PRETRAINED/config.json as --config overrides), '
                      'and run nothing')
  args = parser.parse_args(argv)

  for flag in ('pretrained', 'dataset', 'data_dir'):
    if not getattr(args, flag):
      parser.error(f'--{flag} is required')
  if args.print_main_commands:
    commands = [main_command(args.dataset, args.protocol, split, args.pretrained, args.data_dir,
                             fs.join(args.workdir, f'split{split}')) for split in args.splits]
    print('\n\n'.join(commands))
    return {'commands': commands}
  set_up_process(args.workdir)
  out = run_protocol(args.dataset, args.protocol, args.pretrained, args.data_dir, args.workdir,
                     args.splits, args.set, args.cached_epochs, args.normalise)
  print(protocol_table(out))
  print(f'({args.workdir}/transfer_results.json)')
  return out


if __name__ == '__main__':
  errors.run(main)
