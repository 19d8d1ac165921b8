#!/usr/bin/env bash
# Several GPUs of one host: one process driving them all (default), or one
# process per GPU joined by jax.distributed on localhost (--per_gpu).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/multi_gpu.sh [--gpus 0,1,... | --num_gpus N] [--per_gpu [--port P]] [--dry_run]
                           --config FILE[:VARIANT] --workdir DIR [--mode train|eval|export]
                           [MAIN ARGS...]

Default: one process that drives every selected GPU (the recommended recipe):
  python3 -m avslowfast_jax.main --config ... --workdir ... [MAIN ARGS...]
--per_gpu: one process per GPU, process i on GPU i, all joined by jax.distributed:
  JAX_LOCAL_DEVICE_IDS=i python3 -m avslowfast_jax.main ... \
      --coordinator_address localhost:P --num_processes N --process_id i
(useful to rehearse a multi-host run on one machine; results are the same).

Options:
  --gpus LIST   use these GPUs (sets CUDA_VISIBLE_DEVICES=LIST)
  --num_gpus N  use GPUs 0..N-1 without touching CUDA_VISIBLE_DEVICES
                (default: every GPU that nvidia-smi lists)
  --per_gpu     one process per GPU instead of one process for all of them
  --port P      coordinator port on localhost for --per_gpu (default 12355)
  --dry_run     print the command(s) instead of running them
  -h, --help    this text
Everything else goes to avslowfast_jax.main unchanged; arguments after "--" verbatim.
With --per_gpu the processes run concurrently; if one fails the others are stopped.

Environment (values already set win):
  TF_CPP_MIN_LOG_LEVEL=2                  quiet TensorFlow/XLA C++ logs
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.90     share of each GPU's memory JAX preallocates
  PYTHON=python3                          interpreter to run
TensorFlow is tensorflow-cpu (tf.data only) and never takes a GPU.

Example (8 GPUs, global batch 64, i.e. 8 clips per GPU):
  launch/multi_gpu.sh --config configs/kinetics.py:avslowfast_4x16_r50 --workdir /ckpt/k400 \
      --config.data.data_dir=/data/k400_shards
USAGE
}

source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

DRY_RUN=${DRY_RUN:-0}
unset GPUS  # set (maybe empty) once --gpus is given
NUM_GPUS='' PER_GPU=0 PORT=12355
ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry_run) DRY_RUN=1 ;;
    --per_gpu) PER_GPU=1 ;;
    --gpus) need_value "$@"; GPUS=$2; shift ;;
    --gpus=*) GPUS=${1#*=} ;;
    --num_gpus) need_value "$@"; NUM_GPUS=$2; shift ;;
    --num_gpus=*) NUM_GPUS=${1#*=} ;;
    --port) need_value "$@"; PORT=$2; shift ;;
    --port=*) PORT=${1#*=} ;;
    --) shift; ARGS+=("$@"); break ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done

split_main_args "${ARGS[@]+"${ARGS[@]}"}"
check_config_file
[[ ! -v GPUS || -z $NUM_GPUS ]] || die "give --gpus or --num_gpus, not both"
if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
  die "--port must be a port number (got '$PORT')"
fi
base_env gpu
if [[ -v GPUS ]]; then
  check_gpu_list "$GPUS"
  BASE_ENV+=("CUDA_VISIBLE_DEVICES=$GPUS")
fi
[[ -z $NUM_GPUS || $NUM_GPUS =~ ^[1-9][0-9]*$ ]] ||
  die "--num_gpus must be a positive integer (got '$NUM_GPUS')"
main_argv

if [[ $PER_GPU == 0 ]]; then
  CMD=(env "${BASE_ENV[@]}" "${MAIN_ARGV[@]}")
  if [[ $DRY_RUN == 1 ]]; then
    quote_cmd "${CMD[@]}"
    echo
    exit 0
  fi
  exec "${CMD[@]}"
fi

# One process per GPU.
reject_flags --coordinator_address --num_processes --process_id
if [[ -v GPUS ]]; then
  N=$(tr -cd , <<<"$GPUS" | wc -c)
  N=$((N + 1))
elif [[ -n $NUM_GPUS ]]; then
  N=$NUM_GPUS
elif command -v nvidia-smi >/dev/null && N=$(nvidia-smi -L | grep -c '^GPU') && ((N > 0)); then
  :
else
  die "cannot count the GPUs (no nvidia-smi); pass --gpus or --num_gpus"
fi

# proc_argv I: the command of process I, in P_ARGV. JAX_LOCAL_DEVICE_IDS=I
# makes process I use local GPU I (the I-th of CUDA_VISIBLE_DEVICES).
proc_argv() {
  P_ARGV=(env "${BASE_ENV[@]}" "JAX_LOCAL_DEVICE_IDS=$1" "${MAIN_ARGV[@]}"
    --coordinator_address "localhost:$PORT" --num_processes "$N" --process_id "$1")
}

if [[ $DRY_RUN == 1 ]]; then
  for ((i = 0; i < N; i++)); do
    proc_argv "$i"
    printf '%s &\n' "$(quote_cmd "${P_ARGV[@]}")"
  done
  echo wait
  exit 0
fi

PIDS=()
stop_all() {
  local p
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
}
trap 'stop_all; exit 130' INT TERM
for ((i = 0; i < N; i++)); do
  proc_argv "$i"
  "${P_ARGV[@]}" &
  PIDS+=($!)
done
status=0
for ((i = 0; i < N; i++)); do
  wait -n || status=$?
  if ((status != 0)); then
    echo "$PROG: a process failed (exit $status); stopping the others" >&2
    stop_all
    wait || true
    break
  fi
done
exit "$status"
