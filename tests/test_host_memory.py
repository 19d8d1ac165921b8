"""avslowfast_jax.host_memory: CPU steps reuse their temporaries' pages."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from avslowfast_jax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'

# A jitted function whose 128 MiB of XLA temporaries are allocated and freed on
# every call; prints the fewest minor page faults of one call among five, after
# three warm-up calls (a call that lands on another thread's malloc arena faults
# its pages in once; without the settings every call does).
_PROBE = textwrap.dedent('''
    import resource, sys
    from avslowfast_jax import host_memory
    if sys.argv[1] == 'keep':
      assert host_memory.keep_host_memory()
    import jax, jax.numpy as jnp
    x = jnp.ones((2048, 8192), jnp.float32)
    w = jnp.ones((8192, 8), jnp.float32)
    f = jax.jit(lambda x: (jnp.sin(x) @ w).sum() + jnp.cos(x).sum())
    assert f.lower(x).compile().memory_analysis().temp_size_in_bytes >= 100 << 20
    for _ in range(3):
      f(x).block_until_ready()
    faults = []
    for _ in range(5):
      r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      f(x).block_until_ready()
      faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
    print(min(faults), faults)
    ''')


def _faults_per_call(mode: str) -> int:
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  env.pop('XLA_FLAGS', None)
  out = subprocess.run([sys.executable, '-c', _PROBE, mode], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=True)
  return int(out.stdout.strip().splitlines()[-1].split()[0])


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_kept_memory_is_not_page_faulted_again():
  """Without the settings every call faults its 128 MiB of temporaries in
  again (~32k pages); with them the pages are reused."""
  default, kept = _faults_per_call('default'), _faults_per_call('keep')
  assert default > 20_000, default
  assert kept < 2_000, kept


def test_sync_dispatch_refuses_once_backends_exist():
  """Asynchronous dispatch can only be turned off before the CPU backend
  starts: in a fresh process, after ``jax.devices()`` the call returns False
  and records nothing; before it, it returns True."""
  code = textwrap.dedent('''
      import sys
      from avslowfast_jax import host_memory
      import jax
      if sys.argv[1] == 'late':
        jax.devices()
      print(host_memory.run_cpu_computations_on_calling_thread(),
            host_memory.state()['sync_cpu_dispatch'])
      ''')
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  for mode, want in (('late', 'False False'), ('early', 'True True')):
    out = subprocess.run([sys.executable, '-c', code, mode], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == want, (mode, out.stdout, out.stderr[-1000:])


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_heap_serving_never_undoes_kept_memory():
  """The input pipeline's milder setting (1 GiB trim threshold) must not
  re-enable trimming once ``keep_freed_memory`` disabled it. (In a child
  process: the settings are process-wide.)"""
  code = textwrap.dedent('''
      from avslowfast_jax import host_memory
      assert host_memory.serve_from_heap(32 << 20)
      assert host_memory.state()['heap_served_below'] == 32 << 20
      assert host_memory.keep_freed_memory()
      assert host_memory.serve_from_heap(16 << 20)
      state = host_memory.state()
      assert state['mmap_disabled'] and state['trim_disabled'], state
      assert host_memory.serve_from_heap(0)  # 0: leaves malloc alone, reports it tuned
      print('ok')
      ''')
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr[-2000:]


def test_serve_from_heap_on_glibc():
  before = host_memory.state()
  host_memory.serve_from_heap(0)  # 0: leaves malloc alone
  assert host_memory.state() == before
  if platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc':
    assert host_memory.serve_from_heap(32 << 20) is True
    state = host_memory.state()
    assert state['heap_served_below'] == 32 << 20 or state['mmap_disabled']
