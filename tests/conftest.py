"""Test-wide settings: 8 fake CPU devices for sharding tests, no TF GPU."""

import os

from train_testdata import xla_flags

# Must be set before jax is imported anywhere.
os.environ.setdefault('XLA_FLAGS', xla_flags(8))
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
