#!/usr/bin/env bash
# Builds moe-eval and runs every test. Tests that exercise the CLI use the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product moe-eval
export MOE_EVAL_BIN="$(swift build -c release --show-bin-path)/moe-eval"
swift test "$@"
