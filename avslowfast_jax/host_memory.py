"""Host memory of CPU runs: keep freed pages in the process instead of returning them.

A CPU train step of a full-size model needs gigabytes of XLA temporaries
(``compiled.memory_analysis().temp_size_in_bytes``). XLA's CPU runtime
allocates them with ``malloc`` for every execution and frees them at the
end. glibc serves an allocation that large with a fresh ``mmap`` and
``munmap``s it on ``free``, so every step page-faults all of it again
(docs/cpu.md has the figures and the command that measures them).

:func:`keep_freed_memory` makes glibc serve large allocations from its heap and
never trim the heap, so the second step reuses the first step's pages. That only
works for the main heap: glibc's per-thread arenas fall back to ``mmap`` for
anything above 64 MiB. So :func:`run_cpu_computations_on_calling_thread` turns
off JAX's asynchronous CPU dispatch, which makes the step (and its temporaries'
allocation) run on the thread that calls it.

The cost: the process keeps its peak heap for its lifetime (the step reuses it
every step anyway), and Python cannot queue the next CPU step while one runs
(the input pipeline's threads still prefetch). Entry points apply these
(``avslowfast_jax.main``, the benchmarks); ``--keep_host_memory=false`` opts
out. Nothing here changes a result. :func:`serve_from_heap` is the milder
setting for the input pipeline's record reads.
"""

from __future__ import annotations

import ctypes

import jax

# <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

_state = {'heap_served_below': 0, 'mmap_disabled': False, 'trim_disabled': False,
          'sync_cpu_dispatch': False}


def _mallopt(param: int, value: int) -> bool:
  """glibc's ``mallopt``; False where the C library has none (musl, macOS)."""
  try:
    libc = ctypes.CDLL('libc.so.6')
    return libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1
  except (OSError, AttributeError):
    return False


def state() -> dict:
  """What this process has set so far (for logs and tests)."""
  return dict(_state)


def serve_from_heap(mmap_threshold: int = 32 << 20) -> bool:
  """Serves allocations below ``mmap_threshold`` bytes from the heap and keeps up to 1 GiB free.

  Each training clip reads its video's record (megabytes) into a fresh
  buffer. By default glibc ``mmap``s every allocation above its adaptive
  threshold and returns the pages on ``free``, so each read page-faults
  thousands of zeroed pages. glibc caps the threshold at 32 MiB on 64-bit.
  Returns False where glibc is absent or ``mmap_threshold <= 0``
  (``config.data.malloc_mmap_threshold``: leave malloc alone). Never undoes
  :func:`keep_freed_memory`.
  """
  if mmap_threshold <= 0:
    return _state['heap_served_below'] > 0 or _state['mmap_disabled']
  if _state['mmap_disabled'] or _state['heap_served_below'] >= min(mmap_threshold, 32 << 20):
    return True
  threshold = min(int(mmap_threshold), 32 << 20)
  ok = _mallopt(_M_MMAP_THRESHOLD, threshold)
  if ok and not _state['trim_disabled']:
    ok = _mallopt(_M_TRIM_THRESHOLD, 1 << 30)
  if ok:
    _state['heap_served_below'] = threshold
  return ok


def keep_freed_memory() -> bool:
  """Serves every allocation of the main heap without ``mmap`` and never trims the heap.

  ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, -1)`` (the manual
  page's "disables trimming completely"). False where glibc is absent.
  """
  if _state['mmap_disabled'] and _state['trim_disabled']:
    return True
  ok = _mallopt(_M_MMAP_MAX, 0) and _mallopt(_M_TRIM_THRESHOLD, -1)
  if ok:
    _state['mmap_disabled'] = _state['trim_disabled'] = True
  return ok


def run_cpu_computations_on_calling_thread() -> bool:
  """Turns off JAX's asynchronous dispatch on the CPU backend.

  Must run before the CPU backend exists (before the first ``jax.devices()`` or
  array); returns False, changing nothing, if it already does. Accelerator
  backends are not affected.
  """
  try:  # a private module: absent or different in other jax versions
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    started = xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):  # another jax version: assume not started
    started = False
  if started:
    return _state['sync_cpu_dispatch']
  try:
    jax.config.update('jax_cpu_enable_async_dispatch', False)
  except (AttributeError, KeyError, ValueError):  # a jax without the option
    return False
  _state['sync_cpu_dispatch'] = True
  return True


def keep_host_memory() -> bool:
  """Both of the above: the CPU train step reuses its temporaries' pages. Before backends start."""
  sync = run_cpu_computations_on_calling_thread()
  kept = keep_freed_memory()
  return sync and kept
