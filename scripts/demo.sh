#!/usr/bin/env bash
# Installs what moe-eval needs, builds it (release) and runs the main job on the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release --product moe-eval
bin="$(swift build -c release --show-bin-path)/moe-eval"
fixture=Tests/MoEModelsTests/Fixtures/dsv3/v022_softmax_basic
out="${TMPDIR:-/tmp}/moe-eval-demo-forward.json"
"$bin" inspect --checkpoint "$fixture/checkpoint" --model-args "$fixture/model_args.json"
"$bin" forward --checkpoint "$fixture/checkpoint" --model-args "$fixture/model_args.json" \
  --tokens-file "$fixture/tokens.json" --output "$out" --overwrite
echo "forward pass written to $out"
