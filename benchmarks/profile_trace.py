r"""Where a step's device time goes: a ``jax.profiler`` trace turned into a table.

  python benchmarks/profile_trace.py TRACE_DIR [--steps N] [--step_seconds S] [--hlo HLO.txt]

:func:`trace_steps` traces a few calls of a step function with
``jax.profiler.trace`` into a folder; :func:`load_events` reads what the
profiler wrote there: the Chrome trace ``*.trace.json.gz`` (plain gzip'd JSON,
no TensorFlow needed) or, where that is missing, the ``*.xplane.pb`` through
``jax.profiler.ProfileData``. :func:`summarise` keeps the events of the
device's operations and groups them:

- on a GPU, the kernels and copies on the device's streams (``/device:GPU:N``,
  lines ``Stream #...``); on a TPU, the ``XLA Ops`` line; else every line of
  the device but the profiler's derived ones (``XLA Modules``, ``Steps``, ...);
- on the CPU backend (no device plane), the XLA operations the host threads
  ran: events whose arguments name an ``hlo_op``, or, for the thunk runtime,
  events named like HLO instructions (``fusion.12``, ``convolution.3``).

Each operation gets a kind: from the traced program's HLO where it is given
(:func:`hlo_op_kinds`; the event's ``hlo_op`` names its instruction, and a
fusion is of the kind of what it computes), else from its kernel and HLO
names (:func:`kind_of`): ``convolution / matmul`` (cuDNN / cuBLAS / CUTLASS
kernels, ``convolution`` and ``dot`` ops), ``collective`` (NCCL,
all-reduce, ...), ``transpose / copy`` (transposes, layout changes, copies,
memcpy / memset, pads, slices, concatenations), ``batchnorm / reduction``
(reduce fusions: BatchNorm statistics and their gradients, pooling),
``elementwise / fusion`` (loop fusions, elementwise ops) and ``other``.
The step's time the device spent in no operation is ``idle (host / launch
waits)``.

The summary (JSON-ready): per kind, per operation (HLO instruction, with its
jax ``op_name``: the flax module path) and per kernel the seconds per step,
the share of the step (of the traced wall time per step) and of all
operation time (these sum to 1), calls per step; the busy time (union of the
operations' intervals) and the idle rest. On a CPU several threads run
operations at once, so the operation time can exceed the step; the shares
of operation time still sum to 1.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Iterable, Optional

KINDS = ('convolution / matmul', 'batchnorm / reduction', 'elementwise / fusion',
         'transpose / copy', 'collective', 'other')
IDLE = 'idle (host / launch waits)'

# Vendor kernels of convolutions and matrix products (cuDNN, CUTLASS, cuBLAS, Triton GEMMs).
_VENDOR_CONV = re.compile(r'xmma|implicit_gemm|cudnn|cutlass|gemm|wgrad|dgrad|fprop|cublas|'
                          r'conv2d|conv3d|convolve|winograd|sm\d+_.*(?:nhwc|ndhwc)')
_COLLECTIVE = re.compile(r'nccl|all-reduce|all_reduce|allreduce|all-gather|all_gather|'
                         r'reduce-scatter|reduce_scatter|all-to-all|all_to_all|'
                         r'collective-permute|collective_permute|\bsend\b|\brecv\b')
_MOVE = re.compile(r'transpose|nchwtonhwc|nhwctonchw|\bcopy|copy[._-]|memcpy|memset|'
                   r'concatenate|\bpad\b|pad[._-]|\bslice|slice[._-]|dynamic-update-slice|'
                   r'dynamic_update_slice|reverse|gather|scatter')
_CONV = re.compile(r'convolution|\bconv\b|conv[._-]|\bdot\b|dot[._-]|matmul|\bmm\b')
_REDUCE = re.compile(r'reduce|reduction|batch[-_]?norm|argmax|argmin')
# Lines the profiler derives from the device's events (they would count them twice).
_DERIVED_LINES = ('XLA Modules', 'XLA Ops', 'Steps', 'Framework Ops', 'Framework Name Scope',
                  'Source code', 'Launch Stats', 'XLA TraceMe', 'TensorFlow Ops',
                  'TensorFlow Name Scope', 'Sparse Core Ops')
# An HLO instruction's name: ``fusion.12``, ``convolution.3``, ``add_multiply_fusion``.
_HLO_NAME = re.compile(r'^[a-z][a-z0-9_-]*(\.\d+)*$')
# Thread-pool and runtime events of the CPU backend that are not operations.
_NOT_OPS = re.compile(r'^(threadpool|thunkexecutor|xla|pjrt|tfrt|executable|execute|'
                      r'run|wait|block|transfer|buffer|tracemewrapper|\$)', re.IGNORECASE)


@dataclasses.dataclass
class Event:
  """One complete event: where it ran (process / plane, thread / line), when, how long (us)."""
  process: str
  thread: str
  name: str
  start_us: float
  duration_us: float
  args: dict


def kind_of(name: str, hlo_op: str = '') -> str:
  """The kind (one of :data:`KINDS`) of an operation from its kernel / event and HLO names."""
  text = f'{name} {hlo_op}'.lower()
  # 'convert' (a dtype cast) is elementwise, not a convolution.
  text = text.replace('convert', 'cast')
  if _VENDOR_CONV.search(text):
    return KINDS[0]
  if _COLLECTIVE.search(text):
    return 'collective'
  if _MOVE.search(text):
    return 'transpose / copy'
  if _CONV.search(text):
    return KINDS[0]
  if _REDUCE.search(text):
    return 'batchnorm / reduction'
  if 'fusion' in text or _HLO_NAME.match(name.lower()):
    return 'elementwise / fusion'
  return 'other'


# --------------------------------------------------------------------------- HLO

# Opcodes by kind; a fusion (or call) takes the kind of what it computes.
_HLO_CONV = ('convolution', 'dot', 'ragged-dot')
_HLO_COLLECTIVE = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all',
                   'collective-permute', 'collective-broadcast', 'send', 'recv')
_HLO_REDUCE = ('reduce', 'reduce-window', 'select-and-scatter', 'reduce-precision-x')
_HLO_MOVE = ('transpose', 'copy', 'concatenate', 'pad', 'slice', 'dynamic-slice',
             'dynamic-update-slice', 'gather', 'scatter', 'reverse', 'copy-start', 'copy-done')
_HLO_FREE = ('parameter', 'constant', 'bitcast', 'reshape', 'broadcast', 'get-tuple-element',
             'tuple', 'iota', 'bitcast-convert')
_HLO_HEADER = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$')
_HLO_INSTRUCTION = re.compile(r'^\s+(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$')
_HLO_OPCODE = re.compile(r'\s([a-z][a-z0-9_\-]*)\(')


def _opcode_kind(opcode: str, target: str = '') -> Optional[str]:
  base = re.sub(r'-(start|done|update)$', '', opcode)
  if opcode == 'custom-call':
    return KINDS[0] if re.search(r'conv|gemm|cublas|matmul|dot', target.lower()) else None
  if opcode in _HLO_CONV:
    return KINDS[0]
  if base in _HLO_COLLECTIVE:
    return 'collective'
  if opcode in _HLO_REDUCE:
    return 'batchnorm / reduction'
  if opcode in _HLO_MOVE:
    return 'transpose / copy'
  return None


def hlo_op_kinds(hlo_text: str) -> dict:
  """``{instruction name: (kind, op_name)}`` of every instruction of an HLO module's text
  (``compiled.as_text()``), so that a trace's ``hlo_op`` names its kind exactly.

  A fusion's kind is that of what it computes (through nested fusions and calls):
  convolution / matmul if it holds a convolution or a dot (or a cuDNN / cuBLAS call),
  else collective, else batchnorm / reduction if it holds a reduce, else transpose /
  copy if it only moves data, else elementwise / fusion. ``op_name`` is the jax
  operation's name from the instruction's metadata (its flax module path).
  """
  computations = {}  # name -> [(instruction, opcode, called computations, target, op_name)]
  current = None
  for line in hlo_text.splitlines():
    header = _HLO_HEADER.match(line)
    if header and not line.startswith((' ', '\t')):
      current = computations.setdefault(header.group(1), [])
      continue
    if current is None:
      continue
    m = _HLO_INSTRUCTION.match(line)
    if not m:
      continue
    name, rest = m.groups()
    op = _HLO_OPCODE.search(' ' + rest)
    if not op:
      continue
    calls = re.findall(r'(?:calls|branch_computations|true_computation|false_computation|'
                       r'body)=\{?%?([\w.\-]+(?:,\s*%?[\w.\-]+)*)', rest)
    called = [c.strip().lstrip('%') for group in calls for c in group.split(',')]
    target = re.search(r'custom_call_target="([^"]*)"', rest)
    op_name = re.search(r'op_name="([^"]*)"', rest)
    op_name = op_name.group(1).replace("\\'", "'") if op_name else ''
    current.append((name, op.group(1), called, target.group(1) if target else '', op_name))

  memo = {}

  def computation_kind(comp: str, depth: int = 0) -> str:
    if comp in memo:
      return memo[comp]
    memo[comp] = 'elementwise / fusion'  # guards a cycle
    found = set()
    moves_only = True
    for _, opcode, called, target, _ in computations.get(comp, ()):
      kind = _opcode_kind(opcode, target)
      if called and depth < 20:
        kind = computation_kind(called[0], depth + 1) if len(called) == 1 else \
            min((computation_kind(c, depth + 1) for c in called), key=KINDS.index)
      if kind:
        found.add(kind)
      if kind != 'transpose / copy' and opcode not in _HLO_FREE:
        moves_only = False
    for kind in (KINDS[0], 'collective', 'batchnorm / reduction'):
      if kind in found:
        memo[comp] = kind
        return kind
    memo[comp] = 'transpose / copy' if found and moves_only else 'elementwise / fusion'
    return memo[comp]

  def computation_op_name(comp: str) -> str:
    """The op_name of what the computation is about: an instruction of its kind, else
    its last named one (the root)."""
    kind = computation_kind(comp)
    named = [(i, op_name) for i in computations.get(comp, ()) for op_name in (i[4],) if op_name]
    for (_, opcode, _, target, _), op_name in named:
      if _opcode_kind(opcode, target) == kind:
        return op_name
    return named[-1][1] if named else ''

  out = {}
  for comp, instructions in computations.items():
    for name, opcode, called, target, op_name in instructions:
      kind = _opcode_kind(opcode, target)
      if opcode in ('fusion', 'call', 'async-start') and called:
        kind = computation_kind(called[0])
        op_name = op_name or computation_op_name(called[0])
      out[name] = (kind or 'elementwise / fusion', op_name)
  return out


# --------------------------------------------------------------------------- loading

def _latest(pattern: str) -> Optional[str]:
  files = glob.glob(pattern, recursive=True)
  return max(files, key=os.path.getmtime) if files else None


def events_from_trace_json(path: str) -> list:
  """The complete (``ph: X``) events of a Chrome trace (``*.trace.json[.gz]``)."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt') as f:
    trace = json.load(f)
  raw = trace['traceEvents'] if isinstance(trace, dict) else trace
  processes, threads = {}, {}
  for e in raw:
    if e.get('ph') == 'M' and e.get('name') == 'process_name':
      processes[e.get('pid')] = str(e.get('args', {}).get('name', ''))
    elif e.get('ph') == 'M' and e.get('name') == 'thread_name':
      threads[(e.get('pid'), e.get('tid'))] = str(e.get('args', {}).get('name', ''))
  out = []
  for e in raw:
    if e.get('ph') != 'X' or 'dur' not in e:
      continue
    pid, tid = e.get('pid'), e.get('tid')
    out.append(Event(processes.get(pid, str(pid)), threads.get((pid, tid), str(tid)),
                     str(e.get('name', '')), float(e.get('ts', 0.0)), float(e['dur']),
                     dict(e.get('args') or {})))
  return out


def events_from_xplane(path: str) -> list:
  """The events of an ``*.xplane.pb`` through ``jax.profiler.ProfileData`` (no TensorFlow)."""
  from jax.profiler import ProfileData  # pylint: disable=import-outside-toplevel
  data = ProfileData.from_file(path)
  out = []
  for plane in data.planes:
    for line in plane.lines:
      for e in line.events:
        args = {}
        try:
          args = {str(k): v for k, v in e.stats}
        except Exception:  # pylint: disable=broad-except  # stats of an unknown type
          pass
        out.append(Event(plane.name, line.name, e.name, e.start_ns / 1e3,
                         e.duration_ns / 1e3, args))
  return out


def load_events(log_dir: str, source: str = 'auto') -> tuple:
  """``(events, source file)`` of the newest trace under ``log_dir``.

  ``source``: 'json' (the ``*.trace.json.gz``), 'xplane' (the ``*.xplane.pb``)
  or 'auto' (the JSON where the profiler wrote one, else the xplane).
  """
  json_path = _latest(os.path.join(log_dir, '**', '*.trace.json.gz'))
  xplane_path = _latest(os.path.join(log_dir, '**', '*.xplane.pb'))
  if source in ('auto', 'json') and json_path:
    return events_from_trace_json(json_path), json_path
  if source in ('auto', 'xplane') and xplane_path:
    return events_from_xplane(xplane_path), xplane_path
  raise FileNotFoundError(f'no {source} trace under {log_dir} '
                          f'({os.listdir(log_dir) if os.path.isdir(log_dir) else "missing"})')


# --------------------------------------------------------------------------- choosing

def _hlo_op(e: Event) -> str:
  for key in ('hlo_op', 'long_name', 'tf_op'):
    if key in e.args:
      return str(e.args[key])
  return ''


def device_op_events(events: Iterable[Event], device_only: bool = False) -> tuple:
  """``(op events, where)``: the events of the device's operations (module docstring).

  ``device_only``: an accelerator's run, whose host events are no operations (a trace
  without the device's events, e.g. where CUPTI is missing, then gives none).
  """
  events = list(events)
  device = [e for e in events if '/device:' in e.process and 'CPU' not in e.process.upper()]
  if device:
    streams = [e for e in device if 'stream' in e.thread.lower()]
    if streams:
      return streams, 'device streams'
    ops = [e for e in device if e.thread == 'XLA Ops']
    if ops:
      return ops, 'XLA Ops line'
    # Lines of another name: every device line but the profiler's derived ones.
    rest = [e for e in device if e.thread not in _DERIVED_LINES]
    if rest:
      return rest, 'device lines'
  if device_only:
    return [], 'no device events'
  host = [e for e in events if e not in device] if device else events
  with_hlo = [e for e in host if 'hlo_op' in e.args]
  if with_hlo:
    return with_hlo, 'host events with an hlo_op'
  named = [e for e in host if _HLO_NAME.match(e.name) and not _NOT_OPS.match(e.name)
           and 'python' not in e.thread.lower()]
  return named, 'host events named as HLO instructions'


def _union_us(intervals: list) -> float:
  """Total length of the union of ``(start, end)`` intervals."""
  total, end = 0.0, float('-inf')
  start = None
  for s, e in sorted(intervals):
    if start is None or s > end:
      if start is not None:
        total += end - start
      start, end = s, e
    else:
      end = max(end, e)
  if start is not None:
    total += end - start
  return total


def _rows(table: dict, steps: int, step_us: float, op_us: float, top: int) -> list:
  rows = []
  for key, (us, n, kind, hlo, op_name) in sorted(table.items(), key=lambda kv: -kv[1][0])[:top]:
    rows.append({'name': key[:200], 'kind': kind, 'hlo_op': hlo[:120], 'op_name': op_name[:200],
                 'seconds_per_step': us / steps / 1e6, 'calls_per_step': n / steps,
                 'share_of_step': us / steps / step_us, 'share_of_op_time': us / op_us})
  return rows


def summarise(events: Iterable[Event], steps: int, step_seconds: float, top: int = 15,
              device_only: bool = False, op_kinds: Optional[dict] = None) -> dict:
  """The table of a trace of ``steps`` steps of ``step_seconds`` (wall, per step) each.

  ``op_kinds``: :func:`hlo_op_kinds` of the traced program, which gives each
  operation's kind from its HLO (else :func:`kind_of` guesses it from the names).
  ``top_ops`` are operations (HLO instructions, with the jax ``op_name`` of the
  first), ``top_kernels`` the event names (on a GPU, kernels: one cuDNN kernel
  may serve many convolutions).
  """
  ops, where = device_op_events(events, device_only)
  if not ops:
    raise ValueError(f'the trace holds no device operation events ({where})')
  op_kinds = op_kinds or {}
  per_kind = collections.defaultdict(lambda: [0.0, 0])
  per_op, per_kernel = {}, {}
  from_hlo = 0.0
  for e in ops:
    hlo = _hlo_op(e).lstrip('%')
    if hlo in op_kinds:
      kind, op_name = op_kinds[hlo]
      from_hlo += e.duration_us
    else:
      kind, op_name = kind_of(e.name, hlo), ''
    per_kind[kind][0] += e.duration_us
    per_kind[kind][1] += 1
    for table, key in ((per_op, hlo or e.name), (per_kernel, e.name)):
      entry = table.setdefault(key, [0.0, 0, kind, hlo, op_name])
      entry[0] += e.duration_us
      entry[1] += 1
  op_us = sum(v[0] for v in per_kind.values())
  busy_us = _union_us([(e.start_us, e.start_us + e.duration_us) for e in ops])
  step_us = step_seconds * 1e6
  kinds = [{'kind': k, 'seconds_per_step': us / steps / 1e6, 'calls_per_step': n / steps,
            'share_of_step': us / steps / step_us, 'share_of_op_time': us / op_us}
           for k, (us, n) in sorted(per_kind.items(), key=lambda kv: -kv[1][0])]
  idle_us = max(0.0, step_us - busy_us / steps)
  kinds.append({'kind': IDLE, 'seconds_per_step': idle_us / 1e6, 'calls_per_step': None,
                'share_of_step': idle_us / step_us, 'share_of_op_time': None})
  return {
      'events_from': where, 'steps': steps, 'step_seconds': step_seconds,
      'op_seconds_per_step': op_us / steps / 1e6, 'busy_seconds_per_step': busy_us / steps / 1e6,
      'busy_fraction': busy_us / steps / step_us, 'ops_per_step': len(ops) / steps,
      'distinct_ops': len(per_op), 'kinds_from_hlo': from_hlo / op_us if op_us else 0.0,
      'kinds': kinds, 'top_ops': _rows(per_op, steps, step_us, op_us, top),
      'top_kernels': _rows(per_kernel, steps, step_us, op_us, top),
  }


# --------------------------------------------------------------------------- tracing

def trace_steps(run_step: Callable[[], Any], steps: int, log_dir: Optional[str] = None,
                source: str = 'auto', top: int = 15, hlo_text: str = '') -> dict:
  """Traces ``steps`` calls of ``run_step`` (each must wait for its step) and summarises.

  ``hlo_text``: the traced program's ``compiled.as_text()``, for exact kinds.
  The trace goes to ``log_dir`` (kept) or to a temporary folder (removed).
  Adds ``trace_file`` and ``trace_overhead_seconds`` (starting and writing the trace).
  """
  import jax  # pylint: disable=import-outside-toplevel
  folder = log_dir or tempfile.mkdtemp(prefix='jax_trace_')
  try:
    begin = time.perf_counter()
    with jax.profiler.trace(folder):
      start = time.perf_counter()
      for i in range(steps):
        with jax.profiler.StepTraceAnnotation('train', step_num=i):
          run_step()
      wall = time.perf_counter() - start
    overhead = time.perf_counter() - begin - wall
    events, path = load_events(folder, source)
    out = summarise(events, steps, wall / steps, top=top,
                    device_only=jax.default_backend() != 'cpu',
                    op_kinds=hlo_op_kinds(hlo_text) if hlo_text else None)
    out.update({'trace_file': os.path.relpath(path, folder) if not log_dir else path,
                'trace_overhead_seconds': overhead})
    return out
  finally:
    if not log_dir:
      shutil.rmtree(folder, ignore_errors=True)


def format_table(summary: dict, title: str = '') -> str:
  """The summary as a text table: kinds, then the top operations."""
  lines = [title] if title else []
  lines.append(f"step {1e3 * summary['step_seconds']:.2f} ms traced, operations "
               f"{1e3 * summary['op_seconds_per_step']:.2f} ms, busy "
               f"{100 * summary['busy_fraction']:.1f}%, {summary['ops_per_step']:.0f} ops/step "
               f"({summary['events_from']}; kinds from HLO for "
               f"{100 * summary['kinds_from_hlo']:.0f}% of the time)")
  lines.append(f"{'kind':<28} {'ms/step':>9} {'of step':>8} {'of ops':>7} {'calls':>7}")
  for k in summary['kinds']:
    ops = '' if k['share_of_op_time'] is None else f"{100 * k['share_of_op_time']:6.1f}%"
    calls = '' if k['calls_per_step'] is None else f"{k['calls_per_step']:7.0f}"
    lines.append(f"{k['kind']:<28} {1e3 * k['seconds_per_step']:9.3f} "
                 f"{100 * k['share_of_step']:7.1f}% {ops:>7} {calls:>7}")
  lines.append(f"{'top operations':<36} {'ms/step':>9} {'of step':>8}  {'kind':<22} op_name")
  for o in summary['top_ops']:
    name = o['name'] if len(o['name']) <= 36 else o['name'][:33] + '...'
    op_name = o['op_name'] if len(o['op_name']) <= 60 else '...' + o['op_name'][-57:]
    lines.append(f"{name:<36} {1e3 * o['seconds_per_step']:9.3f} "
                 f"{100 * o['share_of_step']:7.1f}%  {o['kind']:<22} {op_name}")
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('trace_dir')
  parser.add_argument('--steps', type=int, default=1, help='steps the trace holds')
  parser.add_argument('--step_seconds', type=float, default=0.0,
                      help='wall seconds per step (default: the span of the operations)')
  parser.add_argument('--source', default='auto', choices=('auto', 'json', 'xplane'))
  parser.add_argument('--top', type=int, default=15)
  parser.add_argument('--hlo', default='', help="the program's HLO text (compiled.as_text()), "
                      'for exact kinds')
  parser.add_argument('--json', action='store_true', help='print the summary as JSON')
  args = parser.parse_args(argv)
  events, path = load_events(args.trace_dir, args.source)
  step_seconds = args.step_seconds
  if step_seconds <= 0:
    ops, _ = device_op_events(events)
    span = max(e.start_us + e.duration_us for e in ops) - min(e.start_us for e in ops)
    step_seconds = span / 1e6 / args.steps
  op_kinds = None
  if args.hlo:
    with open(args.hlo) as f:
      op_kinds = hlo_op_kinds(f.read())
  summary = summarise(events, args.steps, step_seconds, args.top, op_kinds=op_kinds)
  summary['trace_file'] = path
  print(json.dumps(summary, indent=1) if args.json else format_table(summary, path))


if __name__ == '__main__':
  sys.exit(main())
