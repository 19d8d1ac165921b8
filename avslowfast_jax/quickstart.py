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
import ast
import codecs
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Sequence

VARIANTS = ('avslowfast', 'slowfast', 'audio')
TITLES = {'avslowfast': 'AVSlowFast', 'slowfast': 'SlowFast (visual only)',
          'audio': 'Audio only'}
CONFIG = 'configs/quickstart.py'


def _config_path() -> str:
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(here, CONFIG)


# An absl log line: "I1126 07:48:31.020838 140173109459840 trainer.py:207] message".
_ABSL_LINE = re.compile(r'^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] ?(.*)$')
# The trainer's progress message (avslowfast_jax/train/trainer.py).
_STEP_LINE = re.compile(r'^step (\d+)/(\d+)\s+(.*?)\s*ETA (\S+)\s*$')
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


def _pretty_metrics(message: str) -> str:
  """``eval: {'top1': 0.5, ...}`` (and ``Wrote PATH: {...}``) -> percentages, briefly."""
  head, sep, tail = message.partition(': {')
  if not sep or not (head == 'eval' or head.startswith('Wrote ')):
    return message
  try:
    metrics = ast.literal_eval('{' + tail)
  except (ValueError, SyntaxError):
    return message
  parts = [f'{name} {100 * metrics[key]:.1f}%' for key, name in (('top1', 'top-1'),
                                                                  ('top5', 'top-5'))
           if isinstance(metrics.get(key), (int, float))]
  if 'num_videos' in metrics:
    parts.append(f'({metrics["num_videos"]} videos, {metrics.get("num_views", "?")} views)')
  where = 'validation' if head == 'eval' else head
  return f'{where}: ' + '  '.join(parts)


def _bar(done: int, total: int, width: int = 20) -> str:
  filled = int(round(width * done / max(total, 1)))
  return '[' + '#' * filled + '-' * (width - filled) + ']'


class _StageOutput:
  """Turns one subprocess's output into console text (the log file gets it all)."""

  def __init__(self, console: _Console, label: str = ''):
    self.console = console
    self.label = label
    self.in_config_dump = False
    self.shown_tenth = -1

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
      step = _STEP_LINE.match(message)
      if step and level == 'I':
        self._step(int(step.group(1)), int(step.group(2)), step.group(3), step.group(4))
        return
      if level == 'I' and message.startswith(_HIDDEN_INFO):
        return
      if level == 'I':
        message = _pretty_metrics(message)
      line = '  ' + _LEVELS.get(level, '') + message
    self.console.line(line)

  def _step(self, done: int, total: int, metrics: str, eta: str) -> None:
    words = metrics.split()
    values = dict(zip(words[::2], words[1::2]))
    shown = f'loss {values.get("loss", "?")}'
    if 'top1' in values:
      shown += f'  top-1 {100 * float(values["top1"]):4.1f}%'
    text = f'  {self.label:<10} {_bar(done, total)} {done:>4}/{total}  {shown}  ETA {eta}'
    tenth = 10 * done // max(total, 1)
    if done >= total or (not self.console.tty and tenth > self.shown_tenth):
      self.console.line(text)
    else:
      self.console.update(text)
    self.shown_tenth = tenth


# Start-up INFO messages of the project's own commands that a newcomer need not read
# (they stay in the log file).
_HIDDEN_INFO = ('Plan: ', 'process 0/', 'Already trained')


def _run(cmd: Sequence[str], log_path: str, env=None, label: str = '') -> None:
  """Runs ``cmd``, logging its output to ``log_path`` and showing the gist of it.

  The log file gets every line (progress bars only in their final state); the
  console gets what :class:`_StageOutput` keeps, with bars redrawn in place.
  """
  print(f'\n$ {" ".join(shlex.quote(c) for c in cmd)}', flush=True)
  out = _StageOutput(_Console(), label)
  with open(log_path, 'a') as log:
    log.write(f'$ {" ".join(cmd)}\n')
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')
    pending = ''
    while True:
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
  if out.console.live:
    out.console.line('')
  if code:
    raise SystemExit(f'Command failed with exit code {code} (full log: {log_path}):\n  '
                     + ' '.join(cmd))


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


def run(workdir: str, num_videos: int, steps: int, variants: Sequence[str], seed: int,
        overrides: Sequence[str] = ()) -> dict:
  """Runs every stage; returns the summary written to ``WORKDIR/summary.json``."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  log = os.path.join(workdir, 'quickstart.log')
  env = _env()
  py = sys.executable
  started = time.time()
  data_dir = os.path.join(workdir, 'videos')
  shards = os.path.join(workdir, 'shards')

  stage = _Stages(started, 3 + len(variants) + ('avslowfast' in variants))
  print(f'Quickstart in {workdir} (full log: {log})', flush=True)
  # 1. The dataset.
  manifest = os.path.join(data_dir, 'manifest.csv')
  stage('The synthetic audiovisual dataset')
  if os.path.exists(manifest):
    print(f'  {manifest} exists: skipped')
  else:
    _run([py, '-m', 'data_pipelines.synthetic', '--output_dir', data_dir,
          '--num_videos', str(num_videos), '--seed', str(seed)], log, env)
  # 2. Shards.
  stage('TFRecord shards')
  if os.path.exists(os.path.join(shards, 'label_map.json')):
    print(f'  {shards} exists: skipped')
  else:
    _run([py, '-m', 'data_pipelines.prepare', '--manifest', manifest, '--output_dir', shards,
          '--short_side', '72', '--num_workers', '2'], log, env)

  common = [f'--config.data.data_dir={shards}', f'--config.train.total_steps={steps}',
            f'--config.seed={seed}', *overrides]
  results = {}
  for variant in variants:
    run_dir = os.path.join(workdir, 'runs', variant)
    base = [py, '-m', 'avslowfast_jax.main', '--config', f'{_config_path()}:{variant}',
            '--workdir', run_dir, *common]
    # 3. Train (resumes if interrupted), 4. evaluate.
    stage(f'{TITLES[variant]}: train {steps} steps, then evaluate')
    if os.path.exists(os.path.join(run_dir, 'eval', 'eval_results.json')) or \
        os.path.exists(os.path.join(run_dir, 'eval_results.json')):
      print(f'  {run_dir} is evaluated: skipped')
    else:
      _run(base + ['--mode', 'train'], log, env, label=variant)
      _run(base + ['--mode', 'eval'], log, env)
    results[variant] = _load_eval(run_dir)

  # 5. Export and predict with the audiovisual model.
  export_dir = None
  prediction = None
  if 'avslowfast' in variants:
    stage('Export AVSlowFast, predict one video')
    run_dir = os.path.join(workdir, 'runs', 'avslowfast')
    export_dir = os.path.join(run_dir, 'export')
    if not os.path.exists(os.path.join(export_dir, 'config.json')):
      _run([py, '-m', 'avslowfast_jax.main', '--config', f'{_config_path()}:avslowfast',
            '--workdir', run_dir, *common, '--mode', 'export', '--export_dir', export_dir],
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
      'minutes': round((time.time() - started) / 60, 2),
      'steps': steps,
      'results': {v: {k: results[v].get(k) for k in ('top1', 'top5') if k in results[v]}
                  for v in variants},
      'per_class_top1': {v: results[v].get('per_class_accuracy') for v in variants},
      'class_names': _class_names(shards),
      'chance_top1': 1.0 / max(1, len(_class_names(shards))),
      'plots': plots,
      'export_dir': export_dir,
      'prediction': prediction,
      'tensorboard': f'tensorboard --logdir {os.path.join(workdir, "runs")}',
  }
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  _print_summary(summary, variants)
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
  raise SystemExit(f'No eval_results.json under {run_dir}')


def _first_validation_video(manifest: str):
  import csv  # pylint: disable=g-import-not-at-top
  with open(manifest) as f:
    for row in csv.DictReader(f):
      if row.get('split') == 'validation':
        return os.path.join(os.path.dirname(manifest), row['path']), row['label']
  raise SystemExit(f'{manifest}: no validation video')


def _class_names(shards: str) -> List[str]:
  with open(os.path.join(shards, 'label_map.json')) as f:
    label_map = json.load(f)
  if isinstance(label_map, dict):
    label_map = label_map.get('labels', label_map.get('label', label_map))
  if isinstance(label_map, dict):  # {name: index}
    return [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
  return list(label_map)


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
    from avslowfast_jax.tools import plots  # pylint: disable=g-import-not-at-top
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
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


def _print_summary(summary: dict, variants) -> None:
  line = '-' * 64
  print(f'\n{line}\nQuickstart finished in {summary["minutes"]:.1f} min '
        f'({summary["steps"]} training steps per model).')
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
    print(f'\n  per-class top-1 (%)       ' + ''.join(f'{TITLES[v].split()[0]:>12}' for v in variants))
    for i, name in enumerate(names):
      print(f'  {name:<26}' + ''.join(f'{100 * pcs[v][i]:>12.0f}' for v in variants))
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
  parser.add_argument('--num_videos', type=int, default=40,
                      help='videos per class (80%% train, 20%% validation; default 40)')
  parser.add_argument('--steps', type=int, default=300, help='training steps per model')
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help='comma list of avslowfast,slowfast,audio')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--override', action='append', default=[],
                      help='extra --config.x=y for every training run (repeatable)')
  args = parser.parse_args(argv)
  variants = [v for v in args.variants.split(',') if v]
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    parser.error(f'unknown variants {sorted(unknown)}; choose from {VARIANTS}')
  run(args.workdir, args.num_videos, args.steps, variants, args.seed, args.override)


if __name__ == '__main__':
  main()
