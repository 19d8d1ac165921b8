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
    xs.append(np.asarray(features(variables, model_builder.model_inputs(config, b))))
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
  model, task = model_task or model_builder.build(config)
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
                 splits: Sequence[int] = SPLITS, overrides: Sequence[str] = (),
                 cached_epochs: float = 4.0) -> dict:
  """Runs ``protocol`` on each split; returns ``{'splits': {N: metrics}, 'mean': {...}}``."""
  if dataset not in DATASETS:
    raise UserError(f'--dataset {dataset!r}: expected one of {sorted(DATASETS)}')
  if protocol not in PROTOCOLS:
    raise UserError(f'--protocol {protocol!r}: expected one of {PROTOCOLS}')
  if '{split}' not in data_dir and len(splits) > 1:
    raise UserError(f'--data_dir {data_dir!r}: give a pattern with {{split}} (one prepared '
                    'folder per official split, e.g. /data/ucf101_split{split})')
  ckpt_lib.check_weights_source(pretrained, '--pretrained')  # before any model is built
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
  args = parser.parse_args(argv)

  set_up_process(args.workdir)
  for flag in ('pretrained', 'dataset', 'data_dir'):
    if not getattr(args, flag):
      parser.error(f'--{flag} is required')
  out = run_protocol(args.dataset, args.protocol, args.pretrained, args.data_dir, args.workdir,
                     args.splits, args.set, args.cached_epochs)
  print(protocol_table(out))
  print(f'({args.workdir}/transfer_results.json)')
  return out


if __name__ == '__main__':
  errors.run(main)
