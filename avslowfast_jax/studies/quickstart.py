r"""The main job: the whole system, end to end, on a small built-in dataset.

  python -m avslowfast_jax.quickstart --workdir quickstart_out

1. writes the synthetic audiovisual dataset (real H.264 + AAC mp4 files),
2. prepares it into TFRecord shards,
3. trains a tiny AVSlowFast and, the same way, its visual-only (SlowFast) and
   audio-only counterparts,
4. evaluates each with multi-view testing,
5. exports the AVSlowFast model and runs ``predict`` on one video,
6. plots training curves and per-class accuracy, and prints a summary.

Each stage is the project's own command (run as a subprocess, so what you see
here is exactly what you would type); a stage whose output already exists is
skipped, so an interrupted quickstart picks up where it stopped.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from data_pipelines import errors
from data_pipelines.errors import UserError

VARIANTS = ('avslowfast', 'slowfast', 'audio')
TITLES = {'avslowfast': 'AVSlowFast', 'slowfast': 'SlowFast (visual only)',
          'audio': 'Audio only'}
# The models' config, beside this file.
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', 'quickstart.py')
# The videos: the generator's 96x72 frames for 2.4 s (a 64-frame window at 30 fps, and
# room for two evaluation views), prepared at the largest short side the training jitter
# takes.
VIDEO_SECONDS = 2.4
SHORT_SIDE = 66
# 32 training and 24 validation videos per class. The summary compares the models class by
# class, so one validation video must be a few points of a class, not the 12.5 of 8.
NUM_VIDEOS = 56
NUM_VAL_VIDEOS = 24
# Training steps per model. The joint model trains longer: DropPathway keeps its audio
# pathway out of 70% of its steps, and only the steps that have it can teach the sync
# classes, whose flash and sound must be seen together.
STEPS = {'avslowfast': 500, 'slowfast': 300, 'audio': 300}
# The sync classes' events ring for 0.4 s (data_pipelines/synthetic.py): brief events
# barely register in features sampled every 0.53 s, and a few dozen videos per class do
# not teach them.
SYNC_EVENTS = 'ringing'


# An absl log line: "I1126 07:48:31.020838 140173109459840 trainer.py:207] message".
_ABSL_LINE = re.compile(r'^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] ?(.*)$')
_LEVELS = {'W': 'warning: ', 'E': 'error: ', 'F': 'fatal: '}


class _Console:
  """Shows a stage's output: whole lines as lines; progress bars in place on a terminal.

  On a terminal, progress updates (tqdm's carriage returns, the trainer's
  step lines drawn as a bar) rewrite one line; elsewhere (a log, CI) only
  finished bars and every tenth of training are printed.
  """

  def __init__(self, stream=None):
    self.stream = stream or sys.stdout
    self.tty = self.stream.isatty()
    self.live = False  # a progress line is on screen, not yet ended

  def update(self, text: str) -> None:
    if not self.tty:
      return
    width = max(20, shutil.get_terminal_size().columns - 1)
    self.stream.write('\r' + text[:width] + '\x1b[K')
    self.stream.flush()
    self.live = True

  def line(self, text: str) -> None:
    if self.live:
      self.stream.write('\r\x1b[K')
      self.live = False
    self.stream.write(text + '\n')
    self.stream.flush()


def _bar(done: int, total: int, width: int = 20) -> str:
  filled = int(round(width * done / max(total, 1)))
  return '[' + '#' * filled + '-' * (width - filled) + ']'


class _StageOutput:
  """Turns one subprocess's output into console text (the log file gets it all).

  The project's own INFO messages stay in the log; the console shows warnings,
  errors and the plain output of the commands (progress bars, results).
  """

  def __init__(self, console: _Console):
    self.console = console
    self.in_config_dump = False

  def progress(self, segment: str) -> None:
    """A segment ended by a carriage return: a progress bar redrawing itself."""
    if segment.strip():
      self.console.update(segment.rstrip())

  def line(self, line: str) -> None:
    """A whole line."""
    line = line.rstrip()
    # main logs the whole config at start-up: keep it in the log file only.
    if 'mode=' in line and 'workdir=' in line:
      self.in_config_dump = True
      return
    if self.in_config_dump:
      # The YAML lines of the dump: indented, or a top-level 'section:' key.
      if not line[:1].isalpha() or ':' in line.split(' ')[0]:
        return
      self.in_config_dump = False
    if not _worth_showing(line):
      return
    match = _ABSL_LINE.match(line)
    if match:
      level, message = match.groups()
      if level == 'I':
        return
      line = '  ' + _LEVELS.get(level, '') + message
    self.console.line(line)


class _TrainingProgress:
  """Draws a training run's progress from its ``train_metrics.jsonl`` (one record per log step)."""

  def __init__(self, console: _Console, label: str, metrics_path: str, total: int):
    self.console, self.label, self.path, self.total = console, label, metrics_path, total
    self.offset = os.path.getsize(metrics_path) if os.path.exists(metrics_path) else 0
    self.first = None  # (time, step) of the first record seen
    self.shown_tenth = -1

  def poll(self) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      f.seek(self.offset)
      text = f.read()
    complete = text[:text.rfind('\n') + 1]
    self.offset += len(complete.encode())
    for record in (json.loads(l) for l in complete.splitlines() if l.strip()):
      self._show(record)

  def _show(self, record: dict) -> None:
    done = int(record['step'])
    now = time.time()
    if self.first is None:
      self.first = (now, done)
    start_time, start_step = self.first
    rate = (done - start_step) / max(now - start_time, 1e-9)
    eta = time.strftime('%M:%S', time.gmtime((self.total - done) / rate)) if rate > 0 else '--:--'
    shown = f'loss {record.get("train/loss", float("nan")):.4f}'
    if 'train/top1' in record:
      shown += f'  top-1 {100 * record["train/top1"]:4.1f}%'
    text = f'  {self.label:<10} {_bar(done, self.total)} {done:>4}/{self.total}  {shown}  ETA {eta}'
    tenth = 10 * done // max(self.total, 1)
    if done >= self.total or (not self.console.tty and tenth > self.shown_tenth):
      self.console.line(text)
    else:
      self.console.update(text)
    self.shown_tenth = tenth


def _run(cmd: Sequence[str], log_path: str, env=None,
         training: Optional[Tuple[str, str, int]] = None) -> None:
  """Runs ``cmd``, logging its output to ``log_path`` and showing the gist of it.

  The log file gets every line (progress bars only in their final state); the
  console gets what :class:`_StageOutput` keeps, with bars redrawn in place.
  ``training`` = ``(label, train_metrics.jsonl path, total steps)`` draws a
  training run's progress from its metrics file.
  """
  print(f'\n$ {" ".join(shlex.quote(c) for c in cmd)}', flush=True)
  console = _Console()
  out = _StageOutput(console)
  progress = _TrainingProgress(console, *training) if training else None
  with open(log_path, 'a') as log:
    log.write(f'$ {" ".join(cmd)}\n')
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')
    pending = ''
    while True:
      # Wake up at least once a second to look at the metrics file.
      ready, _, _ = select.select([proc.stdout], [], [], 1.0)
      if progress:
        progress.poll()
      if not ready:
        continue
      chunk = os.read(proc.stdout.fileno(), 1 << 16)
      pending += decoder.decode(chunk, final=not chunk)
      # Segments end at '\n' (a line) or '\r' (a progress redraw); a trailing
      # '\r' may be the first half of '\r\n', so it waits for the next chunk.
      while True:
        match = re.search(r'\r\n|\n|\r(?!$)', pending) or (
            re.search(r'\r$', pending) if not chunk else None)
        if not match:
          break
        segment, pending = pending[:match.start()], pending[match.end():]
        if match.group() == '\r':
          out.progress(segment)
        else:
          log.write(segment + '\n')
          out.line(segment)
      if not chunk:
        break
    if pending:
      log.write(pending + '\n')
      out.line(pending)
    code = proc.wait()
  if progress:
    progress.poll()
  if out.console.live:
    out.console.line('')
  if code:
    step = cmd[2] if len(cmd) > 2 and cmd[1] == '-m' else cmd[0]
    raise UserError(f'a step of the quickstart ({step}) failed with exit code {code}; its '
                    f'output is in {log_path}')


def _worth_showing(line: str) -> bool:
  # TensorFlow and XLA print start-up banners before their logging is set up.
  noisy = ('[Hyperparameters]', 'I0000 ', 'W0000 ', 'E0000 ', 'absl::InitializeLog',
           'To enable the following', 'tf_record_iterator', 'Instructions for updating',
           'eager execution and', 'tf.data.TFRecordDataset(path)', 'oneDNN custom operations',
           # orbax, when a checkpoint is still being written as the next is due.
           'Waiting for previous save to complete')
  return bool(line.strip()) and not any(n in line for n in noisy)


def _env() -> Dict[str, str]:
  env = dict(os.environ)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env.setdefault('JAX_PLATFORMS', 'cpu')
  env.setdefault('CUDA_VISIBLE_DEVICES', '')  # the quickstart is a CPU run
  return env


def _check_videos_sync_events(data_dir: str, sync_events: Optional[str]) -> None:
  """A UserError if the videos already in ``data_dir`` have other sync events than asked
  for (``classes.json`` records them; videos without the record have brief ones)."""
  from data_pipelines import fs  # pylint: disable=g-import-not-at-top
  path = fs.join(data_dir, 'classes.json')
  if sync_events is None or not fs.exists(path):
    return
  made = fs.read_json(path).get('settings', {}).get('sync_events', 'brief')
  if made != sync_events:
    raise UserError(f'{path}: the videos there have {made} sync events, not {sync_events}; '
                    f'use another --workdir, or --sync_events {made}')


def make_data(workdir: str, num_videos: int, seed: int,
              run_command: Callable[[List[str]], None],
              stage: Callable[[str], None] = lambda title: None,
              val_fraction: float = 0.2, sync_events: Optional[str] = None) -> Tuple[str, str]:
  """The quickstart's data: the synthetic dataset in ``WORKDIR/videos``, prepared
  (``SHORT_SIDE``) into ``WORKDIR/shards``.

  ``num_videos`` per class (``val_fraction`` of them for validation), generated
  with ``seed`` and ``sync_events`` (the generator's default when None); a stage
  whose output is there is skipped. ``run_command(argv)`` runs each command;
  ``stage(title)`` announces each stage. Returns ``(manifest, shards)``.
  """
  # Lazy: the filesystem layer imports TensorFlow, which the rest of this driver does not need.
  from data_pipelines import fs  # pylint: disable=g-import-not-at-top
  py = sys.executable
  data_dir = fs.join(workdir, 'videos')
  shards = fs.join(workdir, 'shards')
  manifest = fs.join(data_dir, 'manifest.csv')
  stage('The synthetic audiovisual dataset')
  if fs.exists(manifest):
    _check_videos_sync_events(data_dir, sync_events)
    print(f'  {manifest} exists: skipped')
  else:
    run_command([py, '-m', 'data_pipelines.synthetic', '--output_dir', data_dir,
                 '--num_videos', str(num_videos), '--val_fraction', f'{val_fraction:.6g}',
                 '--seed', str(seed), '--num_workers', '2',
                 '--duration_sec', str(VIDEO_SECONDS),
                 *(['--sync_events', sync_events] if sync_events else [])])
  stage('TFRecord shards')
  if fs.exists(fs.join(shards, 'label_map.json')):
    print(f'  {shards} exists: skipped')
  else:
    run_command([py, '-m', 'data_pipelines.prepare', '--manifest', manifest, '--output_dir',
                 shards, '--short_side', str(SHORT_SIDE), '--num_workers', '2'])
  return manifest, shards


def run(workdir: str, num_videos: int, steps: Optional[int], variants: Sequence[str],
        seed: int, overrides: Sequence[str] = (), num_val_videos: int = NUM_VAL_VIDEOS,
        sync_events: Optional[str] = SYNC_EVENTS) -> dict:
  """Runs every stage; returns the summary written to ``WORKDIR/summary.json``.

  ``steps`` trains every model that many steps; None gives each its ``STEPS``.
  ``sync_events`` None is the generator's default.
  """
  if '://' in workdir:
    # The quickstart tails its runs' files and logs its subprocesses through
    # local file descriptors: it is a local demo (training itself takes gs://).
    raise UserError(f'--workdir {workdir}: the quickstart runs in a local folder')
  from avslowfast_jax import cli  # pylint: disable=import-outside-toplevel  # (absl, no jax)
  for variant in variants:  # a mistyped --override fails now, not after the data is made
    cli.check_overrides(f'{CONFIG}:{variant}', overrides, '--override')
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  log = os.path.join(workdir, 'quickstart.log')
  env = _env()
  py = sys.executable
  started = time.time()
  data_dir = os.path.join(workdir, 'videos')

  stage = _Stages(started, 3 + len(variants) + ('avslowfast' in variants))
  print(f'Quickstart in {workdir} (full log: {log})', flush=True)
  # 1. The dataset, 2. shards.
  manifest, shards = make_data(workdir, num_videos, seed, lambda cmd: _run(cmd, log, env), stage,
                               num_val_videos / num_videos, sync_events)

  # No evaluation during training: each model is evaluated (multi-view) right after it.
  num_steps = {v: steps or STEPS[v] for v in variants}

  def run_dir_of(variant):
    return os.path.join(workdir, 'runs', variant)

  def main_command(variant):
    """``avslowfast_jax.main`` on ``variant``'s run, before its ``--mode``."""
    return [py, '-m', 'avslowfast_jax.main', '--config', f'{CONFIG}:{variant}',
            '--workdir', run_dir_of(variant),
            f'--config.data.data_dir={shards}', '--config.train.eval_every_steps=-1',
            f'--config.seed={seed}', f'--config.train.total_steps={num_steps[variant]}',
            *overrides]

  results = {}
  for variant in variants:
    run_dir = run_dir_of(variant)
    base = main_command(variant)
    # 3. Train (resumes if interrupted), 4. evaluate.
    stage(f'{TITLES[variant]}: train {num_steps[variant]} steps, then evaluate')
    if os.path.exists(os.path.join(run_dir, 'eval', 'eval_results.json')) or \
        os.path.exists(os.path.join(run_dir, 'eval_results.json')):
      print(f'  {run_dir} is evaluated: skipped')
    else:
      _run(base + ['--mode', 'train'], log, env,
           training=(variant, os.path.join(run_dir, 'train_metrics.jsonl'),
                     num_steps[variant]))
      _run(base + ['--mode', 'eval'], log, env)
    results[variant] = _load_eval(run_dir)
    print(f'  validation: top-1 {_pct(results[variant].get("top1"))}%  top-5 '
          f'{_pct(results[variant].get("top5"))}%  ({results[variant].get("num_videos")} videos, '
          f'{results[variant].get("num_views")} views)')

  # 5. Export and predict with the audiovisual model.
  export_dir = None
  prediction = None
  if 'avslowfast' in variants:
    stage('Export AVSlowFast, predict one video')
    export_dir = os.path.join(run_dir_of('avslowfast'), 'export')
    if not os.path.exists(os.path.join(export_dir, 'config.json')):
      _run(main_command('avslowfast') + ['--mode', 'export', '--export_dir', export_dir],
           log, env)
    video = _first_validation_video(manifest)
    pred_log = os.path.join(workdir, 'predict.txt')
    with open(pred_log, 'w'):
      pass
    _run([py, '-m', 'avslowfast_jax.predict', '--model', export_dir, video[0]], pred_log, env)
    with open(pred_log) as f:
      prediction = {'video': video[0], 'true_label': video[1], 'output': f.read()}

  # 6. Plots and the summary.
  stage('Plots and summary')
  plots = _plots(workdir, variants, results, log)
  summary = {
      'workdir': workdir,
      'seed': seed,
      'num_videos': num_videos,
      'num_val_videos': num_val_videos,
      'sync_events': sync_events,
      'minutes': round((time.time() - started) / 60, 2),
      'steps': num_steps,
      'results': {v: {k: results[v].get(k) for k in ('top1', 'top5') if k in results[v]}
                  for v in variants},
      'per_class_top1': {v: results[v].get('per_class_accuracy') for v in variants},
      'class_names': _class_names(shards),
      'modality_groups': modality_groups(
          _class_names(shards), class_modalities(data_dir),
          {v: results[v].get('per_class_accuracy') for v in variants}),
      'chance_top1': 1.0 / max(1, len(_class_names(shards))),
      'plots': plots,
      'export_dir': export_dir,
      'prediction': prediction,
      'tensorboard': f'tensorboard --logdir {os.path.join(workdir, "runs")}',
  }
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  print_summary(summary, variants)
  return summary


class _Stages:
  """Prints numbered stage headings with the time elapsed so far."""

  def __init__(self, started: float, total: int):
    self.started, self.total, self.count = started, total, 0

  def __call__(self, title: str) -> None:
    self.count += 1
    elapsed = time.strftime('%M:%S', time.gmtime(time.time() - self.started))
    heading = f'[{self.count}/{self.total}] {title}'
    print(f'\n{heading} {"-" * max(3, 66 - len(heading))} {elapsed}', flush=True)


def _load_eval(run_dir: str) -> dict:
  for path in (os.path.join(run_dir, 'eval', 'eval_results.json'),
               os.path.join(run_dir, 'eval_results.json')):
    if os.path.exists(path):
      with open(path) as f:
        out = json.load(f)
      out['path'] = path
      return out
  raise UserError(f'no eval_results.json under {run_dir}')


def _first_validation_video(manifest: str):
  with open(manifest) as f:
    for row in csv.DictReader(f):
      if row.get('split') == 'validation':
        return os.path.join(os.path.dirname(manifest), row['path']), row['label']
  raise UserError(f'{manifest}: no validation video')


def _class_names(shards: str) -> List[str]:
  with open(os.path.join(shards, 'label_map.json')) as f:
    label_map = json.load(f)
  if isinstance(label_map, dict):
    label_map = label_map.get('labels', label_map.get('label', label_map))
  if isinstance(label_map, dict):  # {name: index}
    return [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
  return list(label_map)


def class_modalities(data_dir: str) -> Dict[str, str]:
  """``{class: 'visual' | 'audio' | 'audiovisual'}`` from the dataset's ``classes.json``."""
  # Lazy, as in make_data: the filesystem layer imports TensorFlow.
  from data_pipelines import fs  # pylint: disable=g-import-not-at-top
  path = fs.join(data_dir, 'classes.json')
  if not fs.exists(path):
    return {}
  return {c['name']: c['modality'] for c in fs.read_json(path).get('classes', [])}


def modality_groups(class_names: Sequence[str], modalities: Dict[str, str],
                    per_class: Dict[str, Optional[Sequence[float]]]) -> dict:
  """Per-class top-1 gathered by the modality each class needs.

  Returns ``{modality: {'classes': [...], 'mean': {variant: mean top-1},
  'avslowfast_at_least': {variant: bool}}}``: ``avslowfast_at_least[v]`` is
  True when AVSlowFast is at least as accurate as ``v`` on every class of the
  group (the joint model should lose no modality's classes to the other one).
  """
  out = {}
  for modality in ('visual', 'audio', 'audiovisual'):
    idx = [i for i, name in enumerate(class_names) if modalities.get(name) == modality]
    if not idx:
      continue
    group = {'classes': [class_names[i] for i in idx], 'mean': {}, 'avslowfast_at_least': {}}
    for v, acc in per_class.items():
      if acc is not None:
        group['mean'][v] = sum(acc[i] for i in idx) / len(idx)
    joint = per_class.get('avslowfast')
    for v, acc in per_class.items():
      if v != 'avslowfast' and joint is not None and acc is not None:
        group['avslowfast_at_least'][v] = all(joint[i] >= acc[i] for i in idx)
    out[modality] = group
  return out


@contextlib.contextmanager
def _stderr_to(path: str):
  """Sends this process's file descriptor 2 (C++ and Python logging alike) to ``path``."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(path, 'a') as f:
    os.dup2(f.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def _plots(workdir: str, variants, results, log: str) -> dict:
  try:
    # Optional: matplotlib is the [plots] extra.
    from avslowfast_jax.studies import plots  # pylint: disable=g-import-not-at-top
    import matplotlib  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print('matplotlib is not installed (pip install -e .[plots]): no plots.')
    return {}
  out = {}
  # Reading the event files imports TensorFlow here, whose start-up banner and
  # deprecation warnings belong in the log, not on the console.
  with _stderr_to(log):
    runs = {TITLES[v]: plots.read_scalars(os.path.join(workdir, 'runs', v)) for v in variants}
  out['training_curves'] = plots.plot_training_curves(
      runs, os.path.join(workdir, 'training_curves.png'))
  per_class = {TITLES[v]: results[v]['per_class_accuracy'] for v in variants
               if results[v].get('per_class_accuracy') is not None}
  if per_class:
    out['per_class_accuracy'] = plots.plot_per_class_accuracy(
        per_class, _class_names(os.path.join(workdir, 'shards')),
        os.path.join(workdir, 'per_class_accuracy.png'),
        title='Per-class top-1 on the synthetic validation set')
  return out


def print_summary(summary: dict, variants) -> None:
  """Prints the run's ``summary.json`` as tables: top-1/top-5 per model, per class, per
  modality group (with whether AVSlowFast keeps up with each single-modality model)."""
  line = '-' * 64
  steps = ', '.join(f'{TITLES[v].split()[0]} {n}' for v, n in summary['steps'].items())
  print(f'\n{line}\nQuickstart finished in {summary["minutes"]:.1f} min '
        f'(training steps: {steps}).')
  print(f'\n  {"model":<26}{"top-1":>8}{"top-5":>8}')
  for v in variants:
    r = summary['results'][v]
    top1 = r.get('top1')
    top5 = r.get('top5')
    print(f'  {TITLES[v]:<26}{_pct(top1):>8}{_pct(top5):>8}')
  print(f'  {"(chance)":<26}{_pct(summary["chance_top1"]):>8}')
  names = summary['class_names']
  pcs = summary['per_class_top1']
  if names and all(pcs.get(v) for v in variants):
    print('\n  per-class top-1 (%)       ' + ''.join(f'{TITLES[v].split()[0]:>12}' for v in variants))
    for i, name in enumerate(names):
      print(f'  {name:<26}' + ''.join(f'{100 * pcs[v][i]:>12.0f}' for v in variants))
  groups = summary.get('modality_groups') or {}
  if groups:
    print('\n  mean per class group (%)  ' + ''.join(f'{TITLES[v].split()[0]:>12}'
                                                   for v in variants))
    for modality, group in groups.items():
      print(f'  {modality + " classes":<26}' + ''.join(
          f'{100 * group["mean"][v]:>12.0f}' if v in group['mean'] else f'{"-":>12}'
          for v in variants))
    # Each modality's own classes: does the joint model keep up with the model of that modality?
    own = {'visual': 'slowfast', 'audio': 'audio'}
    for modality, rival in own.items():
      verdict = groups.get(modality, {}).get('avslowfast_at_least', {}).get(rival)
      if verdict is not None:
        print(f'  AVSlowFast >= {TITLES[rival]} on every {modality} class: '
              f'{"yes" if verdict else "no"}')
  if summary['prediction']:
    p = summary['prediction']
    print(f'\n  predict on {os.path.relpath(p["video"], summary["workdir"])} '
          f'(true label: {p["true_label"]}):')
    for out_line in p['output'].strip().splitlines():
      if _worth_showing(out_line) and not out_line.startswith('$'):
        print(f'    {out_line}')
  print(f'\n  {"workdir:":<20}{summary["workdir"]}')
  for name, path in summary['plots'].items():
    print(f'  {name + ":":<20}{path}')
  if summary['export_dir']:
    print(f'  {"export:":<20}{summary["export_dir"]}')
  print(f'  {"tensorboard:":<20}{summary["tensorboard"]}\n{line}')


def _pct(x):
  return '-' if x is None else f'{100 * x:.1f}'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', default='quickstart_out')
  parser.add_argument('--num_videos', type=int, default=NUM_VIDEOS,
                      help=f'videos per class, training and validation (default {NUM_VIDEOS})')
  parser.add_argument('--num_val_videos', type=int, default=NUM_VAL_VIDEOS,
                      help=f'how many of them are for validation (default {NUM_VAL_VIDEOS})')
  parser.add_argument('--steps', type=int, default=None,
                      help='training steps of every model (default: AVSlowFast '
                      f'{STEPS["avslowfast"]}, SlowFast {STEPS["slowfast"]}, audio-only '
                      f'{STEPS["audio"]})')
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help='comma list of avslowfast,slowfast,audio')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--override', action='append', default=[],
                      help='extra --config.x=y for every training run (repeatable)')
  parser.add_argument('--sync_events', choices=('brief', 'ringing'), default=SYNC_EVENTS,
                      help='the sync classes\' flashes and clicks (python -m '
                      f'data_pipelines.synthetic --help; default {SYNC_EVENTS})')
  args = parser.parse_args(argv)
  variants = [v for v in args.variants.split(',') if v]
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    parser.error(f'unknown variants {sorted(unknown)}; choose from {VARIANTS}')
  if (args.steps is not None and args.steps < 1) or args.num_videos < 1:
    parser.error('--steps and --num_videos must be positive')
  if not 0 < args.num_val_videos < args.num_videos:
    parser.error('--num_val_videos must be positive and below --num_videos')
  run(args.workdir, args.num_videos, args.steps, variants, args.seed, args.override,
      args.num_val_videos, args.sync_events)


if __name__ == '__main__':
  errors.run(main)
