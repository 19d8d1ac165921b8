#!/usr/bin/env bash
# The main job on a fresh machine: install, then run AVSlowFast end to end on
# the built-in synthetic audiovisual dataset on CPU (the run's minutes: README).
#   bash quickstart.sh [WORKDIR] [extra args for python -m avslowfast_jax.quickstart]
set -euo pipefail
cd "$(dirname "$0")"
workdir=${1:-quickstart_out}
shift || true
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q -e '.[plots]'
exec python3 -m avslowfast_jax.quickstart --workdir "$workdir" "$@"
