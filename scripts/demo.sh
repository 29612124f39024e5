#!/usr/bin/env bash
# Installs what moe-eval needs, builds it (release) and runs the main job — `moe-eval run` — on the
# bundled demo model (assets/demo: a small DeepSeek-V3 trained with TorchTitan's own model code).
#
# MOE_EVAL_DEMO_BIN: run this moe-eval binary instead of installing and building; the tests run the README's command
# from a bare copy of the repository with the release binary they already built.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${MOE_EVAL_DEMO_BIN:-}" ]; then
  bin="$MOE_EVAL_DEMO_BIN"
else
  bash scripts/install-deps.sh
  swift build -c release --product moe-eval
  bin="$(swift build -c release --show-bin-path)/moe-eval"
fi
"$bin" run --preset "${PRESET:-1min}" "$@"
