#!/usr/bin/env bash
# One host, all of its devices (CPU, one or more GPUs, or a single TPU VM).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/local.sh [--gpus 0,1,...] [--dry_run] --config FILE[:VARIANT] --workdir DIR
                       [--mode train|eval|export] [MAIN ARGS...]

Runs one training process on this host; JAX uses every local device:
  python3 -m avslowfast_jax.main --config FILE[:VARIANT] --workdir DIR [--mode M] [MAIN ARGS...]

Options:
  --gpus LIST   only these GPUs (sets CUDA_VISIBLE_DEVICES=LIST; JAX sees them as 0..n-1)
  --dry_run     print the command instead of running it
  -h, --help    this text
Everything else (e.g. --config.train.batch_size=16) goes to avslowfast_jax.main unchanged;
arguments after "--" are passed through verbatim.

Environment (values already set win):
  TF_CPP_MIN_LOG_LEVEL=2                  quiet TensorFlow/XLA C++ logs
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.90     share of each GPU's memory JAX preallocates (GPU only)
  PYTHON=python3                          interpreter to run
TensorFlow is tensorflow-cpu (tf.data only) and never takes a GPU, so --gpus /
CUDA_VISIBLE_DEVICES only decides which GPUs JAX uses.

Example:
  launch/local.sh --config configs/kinetics.py:tiny_avslowfast_4x16_r50 --workdir /tmp/run \
      --config.train.batch_size=8
USAGE
}

source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

DRY_RUN=${DRY_RUN:-0}
unset GPUS  # set (maybe empty) once --gpus is given
ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry_run) DRY_RUN=1 ;;
    --gpus) need_value "$@"; GPUS=$2; shift ;;
    --gpus=*) GPUS=${1#*=} ;;
    --) shift; ARGS+=("$@"); break ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done

split_main_args "${ARGS[@]+"${ARGS[@]}"}"
check_config_file
base_env gpu
if [[ -v GPUS ]]; then
  check_gpu_list "$GPUS"
  BASE_ENV+=("CUDA_VISIBLE_DEVICES=$GPUS")
fi
main_argv
CMD=(env "${BASE_ENV[@]}" "${MAIN_ARGV[@]}")

if [[ $DRY_RUN == 1 ]]; then
  quote_cmd "${CMD[@]}"
  echo
  exit 0
fi
exec "${CMD[@]}"
