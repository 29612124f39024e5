#!/usr/bin/env bash
# Regenerates docs/report-dashboard.png: `moe-eval report` of the demo model's two checkpoints (steps 100 and
# 800, 1min preset), rendered by headless Debian chromium in a 1280 × 1000 window (the first screen).
# Usage: MOE_EVAL_BIN=path/to/moe-eval bash scripts/report_screenshot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${MOE_EVAL_BIN:-$(swift build -c release --show-bin-path)/moe-eval}"
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 1; }
out="${1:-docs/report-dashboard.png}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for step in 100 800; do
  "$bin" run --checkpoint "assets/demo/checkpoint/step-$step" --model-args assets/demo/model_args.json \
    --tokenizer assets/tokenizers/demo-dsv3 --preset 1min --log-samples --output-dir "$work/step-$step" --quiet
done
"$bin" report "$work" --output "$work/report.html"
timeout 60 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --window-size=1280,1000 \
  --user-data-dir="$work/profile" --screenshot="$work/shot.png" "file://$work/report.html" 2>/dev/null
mv "$work/shot.png" "$out"
echo "screenshot written to $out"
