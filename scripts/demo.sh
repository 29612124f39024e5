#!/usr/bin/env bash
# Installs what moe-eval needs, builds it (release) and runs the main job — `moe-eval run` — on the
# bundled demo model (assets/demo: a small DeepSeek-V3 trained with TorchTitan's own model code).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release --product moe-eval
bin="$(swift build -c release --show-bin-path)/moe-eval"
"$bin" run --preset "${PRESET:-1min}" "$@"
