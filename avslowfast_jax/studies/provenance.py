"""Where a study's record was made: the library versions and the machine."""

import os
import platform


def environment() -> dict:
  """The libraries and machine a record was made with."""
  versions = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'tensorflow'):
    try:
      versions[name] = __import__(name).__version__
    except ImportError:
      versions[name] = None
  return {'versions': versions, 'python': platform.python_version(),
          'machine': platform.machine(), 'cpu_count': os.cpu_count(),
          'platform': platform.platform()}
