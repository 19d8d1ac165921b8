#!/usr/bin/env bash
# The wheels the device check needs on the GPU machines' image, into .whl/ (git-ignored).
#
#   bash benchmarks/fetch_wheels.sh        # here, where pip reaches the package index
#
# That image (Python 3.12, jax 0.11.2 with CUDA, flax, optax, chex, orbax-checkpoint, absl-py,
# PyYAML, torch, torchvision) lacks ml_collections, which every config imports; nothing else
# that the torch, batch_sweep, train_steps, clip_finish and drop_pathway cases import is
# missing there (docs/accelerators.md). A device call carries .whl and installs them with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  ml_collections==1.1.0  # needs absl-py and PyYAML, both on the image
)
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}"
ls -l .whl
