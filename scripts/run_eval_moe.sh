#!/usr/bin/env bash
# Evaluate a TorchTitan MoE checkpoint with moe-eval, driven by the same environment variables as the
# original scripts/eval/run_eval_moe.sh (a torchrun wrapper around eval_moe_model.py).
#
#   CHECKPOINT_DIR  checkpoint folder (DCP or safetensors); unset = the bundled demo model
#   CONFIG_FILE     TorchTitan train config (TOML, TorchTitan 0.2.x)
#   MODULE, CONFIG  TorchTitan 0.3 config registry instead of CONFIG_FILE: MODULE=deepseek_v3 CONFIG=deepseek_v3_16b
#                   (--module/--config as in `torchrun … -m torchtitan.train --module … --config …`)
#   SEQ_LEN         training seq_len override (--training.seq_len), e.g. when training ran with one
#   OUTPUT_DIR      where eval_results_<timestamp>.json goes (default: {dump_folder}/eval from the config)
#   PRESET          30s | 1min | 5min | 15min | full (default full)
#   SKIP_LM_EVAL    1 = skip benchmark accuracy          LM_EVAL_ONLY  1 = only benchmark accuracy
#   LM_EVAL_TASKS   space-separated tasks (overrides the preset)
#   LM_EVAL_LIMIT   examples per task (overrides the preset)
#   SEED            random seed (default 1337)
#   NGPU            processes: 0, 1 or unset = one CPU process; N > 1 = mpirun -np N, experts split across the
#                   N processes (expert parallelism; needs Open MPI and a build with --traits MPI)
#   MPIRUN_ARGS     extra mpirun arguments with NGPU > 1 (e.g. "--hostfile hosts --map-by node")
#   MOE_EVAL_BIN    use this moe-eval binary instead of the release one built here
#   MOE_EVAL_REBUILD  1 = rebuild the release binary even when it looks current
#
# The release binary is built once and reused: it is rebuilt only when it is missing, when a file under
# Sources/ or Package.swift/Package.resolved is newer than it, when MOE_EVAL_REBUILD=1, or when NGPU needs the
# MPI trait and the existing binary was built without it (recorded in .build/moe-eval-build-traits).
#
# Arguments after the script name go to `moe-eval run` unchanged, e.g. --model-args args.json --threads 2.
#
#   CHECKPOINT_DIR=./outputs/checkpoint/step-1000 CONFIG_FILE=./train.toml PRESET=30s ./scripts/run_eval_moe.sh
set -euo pipefail

PRESET="${PRESET:-full}"
SEED="${SEED:-1337}"
NGPU="${NGPU:-0}"

is_set() {
    case "${1:-}" in
        1|true|TRUE|True|yes|YES|on|ON) return 0 ;;
        *) return 1 ;;
    esac
}

if ! [[ "$NGPU" =~ ^[0-9]+$ ]]; then
    echo "run_eval_moe.sh: NGPU must be a number of processes, not \"$NGPU\"" >&2
    exit 2
fi
if (( NGPU > 1 )) && ! command -v mpirun >/dev/null; then
    echo "run_eval_moe.sh: NGPU=$NGPU needs mpirun (apt-get install openmpi-bin libopenmpi-dev), or use NGPU=0 (one CPU process)" >&2
    exit 2
fi

if [[ -n "${MOE_EVAL_BIN:-}" ]]; then
    BIN="$MOE_EVAL_BIN"
else
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    TRAITS=()
    if (( NGPU > 1 )); then TRAITS=(--traits MPI); fi
    BIN="$ROOT/.build/release/moe-eval"
    STAMP="$ROOT/.build/moe-eval-build-traits"
    WANT_TRAITS="${TRAITS[*]:-none}"
    reason=""
    if [[ ! -x "$BIN" ]]; then reason="no binary yet"
    elif is_set "${MOE_EVAL_REBUILD:-0}"; then reason="MOE_EVAL_REBUILD=1"
    elif [[ -n "$(cd "$ROOT" && find Sources Package.swift Package.resolved -newer "$BIN" -print -quit 2>/dev/null)" ]]; then
        reason="sources newer than the binary"
    elif (( NGPU > 1 )) && [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANT_TRAITS" ]]; then reason="NGPU=$NGPU needs the MPI trait"
    fi
    if [[ -n "$reason" ]]; then
        echo "run_eval_moe.sh: building moe-eval (release${TRAITS[*]:+, MPI}; $reason)…" >&2
        (cd "$ROOT" && swift build -c release --product moe-eval "${TRAITS[@]}" >&2)
        BIN="$(cd "$ROOT" && swift build -c release --show-bin-path "${TRAITS[@]}")/moe-eval"
        # An up-to-date build leaves the binary's time alone; touching it keeps the staleness check quiet until
        # a source really changes.
        touch "$BIN"
        echo "$WANT_TRAITS" > "$STAMP"
    fi
fi
if [[ ! -x "$BIN" ]]; then
    echo "run_eval_moe.sh: moe-eval binary not found at $BIN" >&2
    exit 1
fi

ARGS=(run --preset "$PRESET" --seed "$SEED")
[[ -n "${CHECKPOINT_DIR:-}" ]] && ARGS+=(--checkpoint_dir "$CHECKPOINT_DIR")
if [[ -n "${CONFIG_FILE:-}" && -n "${CONFIG:-}" ]]; then
    echo "run_eval_moe.sh: set CONFIG_FILE (a TOML file) or CONFIG (a TorchTitan 0.3 registry name), not both" >&2
    exit 2
fi
if [[ -n "${MODULE:-}" && -z "${CONFIG:-}" ]]; then
    echo "run_eval_moe.sh: MODULE=$MODULE needs CONFIG (a config of that module, e.g. CONFIG=deepseek_v3_debugmodel)" >&2
    exit 2
fi
[[ -n "${CONFIG_FILE:-}" ]] && ARGS+=(--config_file "$CONFIG_FILE")
[[ -n "${MODULE:-}" ]] && ARGS+=(--module "$MODULE")
[[ -n "${CONFIG:-}" ]] && ARGS+=(--config "$CONFIG")
[[ -n "${SEQ_LEN:-}" ]] && ARGS+=(--training.seq_len "$SEQ_LEN")
[[ -n "${OUTPUT_DIR:-}" ]] && ARGS+=(--output_dir "$OUTPUT_DIR")
is_set "${SKIP_LM_EVAL:-0}" && ARGS+=(--skip-lm-eval)
is_set "${LM_EVAL_ONLY:-0}" && ARGS+=(--lm-eval-only)
if [[ -n "${LM_EVAL_TASKS:-}" ]]; then
    read -r -a TASKS <<< "$LM_EVAL_TASKS"
    ARGS+=(--lm-eval-tasks "${TASKS[@]}")
fi
[[ -n "${LM_EVAL_LIMIT:-}" ]] && ARGS+=(--lm-eval-limit "$LM_EVAL_LIMIT")

if (( NGPU > 1 )); then
    # Open MPI refuses to run as root without these; containers and CI often are root.
    if [[ "$(id -u)" == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
    read -r -a EXTRA_MPIRUN <<< "${MPIRUN_ARGS:-}"
    echo "run_eval_moe.sh: mpirun -np $NGPU ${EXTRA_MPIRUN[*]} $BIN ${ARGS[*]} $*" >&2
    exec mpirun -np "$NGPU" "${EXTRA_MPIRUN[@]}" "$BIN" "${ARGS[@]}" "$@"
fi
echo "run_eval_moe.sh: $BIN ${ARGS[*]} $*" >&2
exec "$BIN" "${ARGS[@]}" "$@"
