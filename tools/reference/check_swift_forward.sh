#!/usr/bin/env bash
# Prints, for every fixture variant, how far `moe-eval forward` is from TorchTitan's logits and routing.
# Usage: tools/reference/check_swift_forward.sh [FIXTURES_DIR]   (default: the committed fixtures)
set -euo pipefail
cd "$(dirname "$0")/../.."
root="${1:-Tests/MoEModelsTests/Fixtures/dsv3}"
swift build -c release --product moe-eval >/dev/null
bin="$(swift build -c release --show-bin-path)/moe-eval"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for dir in "$root"/*/; do
  v="$(basename "$dir")"
  "$bin" forward --checkpoint "$dir/checkpoint" --model-args "$dir/model_args.json" \
    --tokens-file "$dir/tokens.json" --output "$tmp/$v.json"
  python3 - "$tmp/$v.json" "$dir/expected.json" "$v" <<'PY'
import json, sys
ours, ref, name = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
diff = max(abs(x - y) for A, B in zip(ours["logits"], ref["logits"]) for r, s in zip(A, B) for x, y in zip(r, s))
top = max(abs(y) for B in ref["logits"] for s in B for y in s)
bad = sum(set(x) != set(y) for l in ref["routing"] for x, y in zip(ours["routing"][l]["experts"], ref["routing"][l]["experts"]))
tokens = sum(len(ref["routing"][l]["experts"]) for l in ref["routing"])
print(f"{name:30s} max|Δlogit| {diff:.2e}  max|logit| {top:.3f}  expert sets differing {bad}/{tokens}")
PY
done
