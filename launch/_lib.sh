# shellcheck shell=bash
# Helpers shared by launch/local.sh, launch/multi_gpu.sh and launch/tpu_pod.sh.
# Sourced, never run. (launch/slurm.sbatch is self-contained: sbatch copies the
# script to a spool folder, so it cannot find this file next to itself.)
#
# Every launcher builds the exact argv it will run, and either runs it or, with
# --dry_run, prints it as one shell-quoted line per command. Commands are run
# from the same argv (or the same printed string, for pipelines), so what
# --dry_run prints is what would run.

PROG=${PROG:-$(basename "$0")}
MAIN_MODULE=avslowfast_jax.main
PYTHON=${PYTHON:-python3}

die() {
  # One line, the last of stderr: the mistake, then where the usage is.
  printf "%s: error: %s (see '%s --help')\n" "$PROG" "$*" "$PROG" >&2
  exit 2
}

# need_value FLAG [VALUE...]: the flag FLAG must be followed by a value.
need_value() {
  if (($# < 2)) || [[ $2 == --* ]]; then
    die "$1 needs a value"
  fi
}

# q ARG: ARG quoted for a POSIX shell, unquoted when that is safe.
q() {
  local s=$1
  if [[ -n $s && $s =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$s"
  elif [[ $s == *\'* && $s != *[\$\`\"\\!]* ]]; then
    printf '"%s"' "$s"  # reads better than '\'' for a nested command
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# quote_cmd ARG...: one shell-quoted command line.
quote_cmd() {
  local out='' a
  for a in "$@"; do
    out+="${out:+ }$(q "$a")"
  done
  printf '%s' "$out"
}

# split_main_args ARG...: takes --config, --workdir and --mode (as "--x v" or
# "--x=v") out of ARG and keeps everything else, in order, in MAIN_REST.
# "--config.a.b=v" overrides are not --config. Sets CONFIG, WORKDIR, MODE.
split_main_args() {
  CONFIG='' WORKDIR='' MODE=''
  MAIN_REST=()
  while (($#)); do
    case $1 in
      --config | --workdir | --mode)
        need_value "$@"
        case $1 in
          --config) CONFIG=$2 ;;
          --workdir) WORKDIR=$2 ;;
          --mode) MODE=$2 ;;
        esac
        shift 2
        continue
        ;;
      --config=*) CONFIG=${1#*=} ;;
      --workdir=*) WORKDIR=${1#*=} ;;
      --mode=*) MODE=${1#*=} ;;
      *) MAIN_REST+=("$1") ;;
    esac
    shift
  done
  [[ -n $CONFIG ]] ||
    die "--config is required (e.g. --config configs/kinetics.py:avslowfast_4x16_r50)"
  [[ -n $WORKDIR ]] || die "--workdir is required"
  case $MODE in
    '' | train | eval | export) ;;
    *) die "--mode must be train, eval or export (got '$MODE')" ;;
  esac
}

# check_config_file: the file part of CONFIG (before ':') exists here.
check_config_file() {
  local file=${CONFIG%%:*}
  [[ -f $file ]] ||
    die "config file '$file' not found (from --config $CONFIG; run from the repository root)"
}

# reject_flags FLAG...: none of FLAG is among MAIN_REST (the launcher sets it).
reject_flags() {
  local f a
  for f in "$@"; do
    for a in "${MAIN_REST[@]+"${MAIN_REST[@]}"}"; do
      if [[ $a == "$f" || $a == "$f="* ]]; then
        die "$f is set by this launcher; do not pass it"
      fi
    done
  done
}

# main_argv: the python command for CONFIG/WORKDIR/MODE/MAIN_REST, in MAIN_ARGV.
main_argv() {
  MAIN_ARGV=("$PYTHON" -m "$MAIN_MODULE" --config "$CONFIG" --workdir "$WORKDIR")
  [[ -z $MODE ]] || MAIN_ARGV+=(--mode "$MODE")
  MAIN_ARGV+=("${MAIN_REST[@]+"${MAIN_REST[@]}"}")
}

# check_gpu_list LIST: LIST looks like 0,1,2.
check_gpu_list() {
  [[ $1 =~ ^[0-9]+(,[0-9]+)*$ ]] ||
    die "--gpus must be a comma-separated list of GPU indices like 0,1,2,3 (got '$1')"
}

# The environment every launcher sets (values already in the environment win):
# TF_CPP_MIN_LOG_LEVEL quiets the C++ logs of TensorFlow (tf.data) and of XLA.
# XLA_PYTHON_CLIENT_MEM_FRACTION is the share of each GPU's memory that JAX
# preallocates (GPU only; TPU and CPU ignore it). TensorFlow is installed as
# tensorflow-cpu, so it never takes GPU memory; CUDA_VISIBLE_DEVICES therefore
# only selects the GPUs that JAX sees.
# base_env gpu|tpu: sets BASE_ENV, the VAR=VALUE list for `env`.
base_env() {
  BASE_ENV=("TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}")
  if [[ $1 == gpu ]]; then
    BASE_ENV+=("XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.90}")
  fi
}
