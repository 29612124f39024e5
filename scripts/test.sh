#!/usr/bin/env bash
# Builds moe-eval and runs every test. Tests that exercise the CLI use the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product moe-eval
export MOE_EVAL_BIN="$(swift build -c release --show-bin-path)/moe-eval"
swift test "$@"
# With no arguments (the README's command and CI): the real lm-evaluation-harness over `moe-eval serve`
# must reproduce the native benchmark tasks (issue 5). Arguments (e.g. --filter) run only `swift test`.
if [ $# -eq 0 ]; then
  bash scripts/harness_agreement.sh
fi
