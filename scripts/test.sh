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
swift test "$@"
# With no arguments (the README's command and CI): the real lm-evaluation-harness over `moe-eval serve`
# must reproduce the native benchmark tasks (issue 5). Arguments (e.g. --filter) run only `swift test`.
# They also run every parser's libFuzzer target for a bounded time (issue 16); any crash, leak, out-of-memory
# or timeout fails the run (docs/RELIABILITY.md).
if [ $# -eq 0 ]; then
  bash scripts/harness_agreement.sh
  FUZZ_SEED="${MOE_EVAL_FUZZ_SEED:-1}" bash tools/fuzz/run.sh all "${MOE_EVAL_FUZZ_SECONDS:-30}"
fi
