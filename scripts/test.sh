#!/usr/bin/env bash
# Builds moe-eval and runs every test. Tests that exercise the CLI use the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# The release binary has MPI expert parallelism whenever Open MPI is installed, and always in CI
# (install-deps.sh installs it; a missing MPI then fails the build): the distributed tests run it under mpirun.
traits=()
if [ "${CI:-}" = "true" ] || pkg-config --exists ompi-c 2>/dev/null; then traits=(--traits MPI); fi
swift build -c release --product moe-eval "${traits[@]}"
export MOE_EVAL_BIN="$(swift build -c release --show-bin-path "${traits[@]}")/moe-eval"
# NVRTC from NVIDIA's wheel, for the compile check of every CUDA kernel (issue 17): compiling needs no GPU. Installed
# once into a cached venv; under CI a missing NVRTC fails that test, elsewhere it is skipped with the reason.
if [ -z "${MOE_EVAL_NVRTC_DIR:-}" ]; then
  nvrtc_version=12.9.86
  nvrtc_venv="${MOE_EVAL_NVRTC_VENV:-$HOME/.cache/moe-eval/nvrtc-venv}"
  if [ ! -f "$nvrtc_venv/.nvrtc-$nvrtc_version" ]; then
    { python3 -m venv "$nvrtc_venv" && "$nvrtc_venv/bin/pip" install --quiet "nvidia-cuda-nvrtc-cu12==$nvrtc_version" \
        && touch "$nvrtc_venv/.nvrtc-$nvrtc_version"; } || echo "scripts/test.sh: could not install NVRTC into $nvrtc_venv" >&2
  fi
  for folder in "$nvrtc_venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib; do
    if [ -d "$folder" ]; then export MOE_EVAL_NVRTC_DIR="$folder"; fi
  done
fi
swift test "$@"
# With no arguments (the README's command and CI): the real lm-evaluation-harness over `moe-eval serve`
# must reproduce the native benchmark tasks (issue 5). Arguments (e.g. --filter) run only `swift test`.
# They also run every parser's libFuzzer target for a bounded time (issue 16); any crash, leak, out-of-memory
# or timeout fails the run (docs/RELIABILITY.md).
if [ $# -eq 0 ]; then
  bash scripts/harness_agreement.sh
  FUZZ_SEED="${MOE_EVAL_FUZZ_SEED:-1}" bash tools/fuzz/run.sh all "${MOE_EVAL_FUZZ_SECONDS:-30}"
fi
