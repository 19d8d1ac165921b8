#!/usr/bin/env bash
# Runs the same training command on every worker (host) of a Cloud TPU VM pod
# slice. jax.distributed.initialize() finds the other workers by itself there.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/tpu_pod.sh --tpu NAME --zone ZONE [--project PROJECT] [--setup] [--repo_dir DIR]
                         [--dry_run] --config FILE[:VARIANT] --workdir gs://BUCKET/PATH
                         [--mode train|eval|export] [MAIN ARGS...]

Runs on every worker of the TPU VM NAME, at once:
  gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all --command="cd DIR && \
      env TF_CPP_MIN_LOG_LEVEL=2 python3 -m avslowfast_jax.main --config ... --workdir gs://... ..."
Every worker writes checkpoints, so the workdir must be a gs:// bucket that all of them
reach (keep the data there too: --config.data.data_dir=gs://...).

Options:
  --tpu NAME      TPU VM name (required)
  --zone ZONE     its zone, e.g. us-central2-b (required)
  --project P     Google Cloud project (default: gcloud's configured one)
  --setup         first copy this checkout (git-tracked and untracked, non-ignored files)
                  to every worker and pip-install it there with jax[tpu]
  --repo_dir DIR  the project's folder on the workers, relative to the home folder
                  (default avslowfast-jax)
  --dry_run       print the command(s) instead of running them
  -h, --help      this text
Everything else goes to avslowfast_jax.main unchanged; arguments after "--" verbatim.
The ssh session must stay open for the whole run (start it from tmux/screen).

Environment: TF_CPP_MIN_LOG_LEVEL=2 on the workers (value set here wins);
PYTHON=python3 is the interpreter on the workers.

Example (v4-32: 4 workers, 16 chips):
  launch/tpu_pod.sh --tpu my-v4-32 --zone us-central2-b --setup \
      --config configs/kinetics.py:avslowfast_4x16_r50 --workdir gs://my-bucket/k400/avsf_4x16 \
      --config.data.data_dir=gs://my-bucket/k400_shards --config.train.batch_size=1024
USAGE
}

source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

DRY_RUN=${DRY_RUN:-0}
TPU='' ZONE='' PROJECT='' SETUP=0 REPO_DIR=avslowfast-jax
ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry_run) DRY_RUN=1 ;;
    --setup) SETUP=1 ;;
    --tpu) need_value "$@"; TPU=$2; shift ;;
    --tpu=*) TPU=${1#*=} ;;
    --zone) need_value "$@"; ZONE=$2; shift ;;
    --zone=*) ZONE=${1#*=} ;;
    --project) need_value "$@"; PROJECT=$2; shift ;;
    --project=*) PROJECT=${1#*=} ;;
    --repo_dir) need_value "$@"; REPO_DIR=$2; shift ;;
    --repo_dir=*) REPO_DIR=${1#*=} ;;
    --) shift; ARGS+=("$@"); break ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done

[[ -n $TPU ]] || die "--tpu NAME is required"
[[ -n $ZONE ]] || die "--zone ZONE is required"
[[ -n $REPO_DIR && $REPO_DIR != /* && $REPO_DIR != '~'* ]] ||
  die "--repo_dir must be a folder relative to the workers' home folder (got '$REPO_DIR')"
split_main_args "${ARGS[@]+"${ARGS[@]}"}"
[[ $WORKDIR == gs://?* ]] ||
  die "--workdir must be a gs:// bucket path that every worker can write (got '$WORKDIR')"
[[ -f $REPO_ROOT/${CONFIG%%:*} ]] ||
  die "config file '${CONFIG%%:*}' not found in $REPO_ROOT (paths are relative to the repository root)"
# All workers run the same command; jax.distributed.initialize() gets each
# worker's process id from the TPU metadata, so these must not be given.
reject_flags --coordinator_address --num_processes --process_id

base_env tpu
main_argv
GCLOUD_TARGET=(--zone="$ZONE")
[[ -z $PROJECT ]] || GCLOUD_TARGET+=(--project="$PROJECT")
SSH=(gcloud compute tpus tpu-vm ssh "$TPU" "${GCLOUD_TARGET[@]}" --worker=all)

# Each command is kept as one shell-quoted line: --dry_run prints it, a real
# run evals it (which gives back exactly the quoted argv).
CMDS=()
if [[ $SETUP == 1 ]]; then
  TARBALL=${TMPDIR:-/tmp}/avslowfast-jax-src.tgz
  REMOTE_TARBALL=avslowfast-jax-src.tgz
  CMDS+=("$(quote_cmd git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard) | $(
    quote_cmd tar -C "$REPO_ROOT" --ignore-failed-read --null -T - -czf "$TARBALL")")
  CMDS+=("$(quote_cmd gcloud compute tpus tpu-vm scp "$TARBALL" "$TPU:$REMOTE_TARBALL" \
    "${GCLOUD_TARGET[@]}" --worker=all)")
  INSTALL="$(quote_cmd mkdir -p "$REPO_DIR") && $(quote_cmd tar -xzf "$REMOTE_TARBALL" -C "$REPO_DIR")"
  INSTALL+=" && $(quote_cmd cd "$REPO_DIR") && $(quote_cmd "$PYTHON" -m pip install -q -e . 'jax[tpu]' \
    -f https://storage.googleapis.com/jax-releases/libtpu_releases.html)"
  CMDS+=("$(quote_cmd "${SSH[@]}" --command="$INSTALL")")
fi
REMOTE="$(quote_cmd cd "$REPO_DIR") && $(quote_cmd env "${BASE_ENV[@]}" "${MAIN_ARGV[@]}")"
CMDS+=("$(quote_cmd "${SSH[@]}" --command="$REMOTE")")

for c in "${CMDS[@]}"; do
  if [[ $DRY_RUN == 1 ]]; then
    printf '%s\n' "$c"
  else
    eval "$c"
  fi
done
