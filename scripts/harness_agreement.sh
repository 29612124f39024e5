#!/usr/bin/env bash
# The real lm-evaluation-harness (lm-eval[api]==0.4.13, --model local-completions) over `moe-eval serve`
# must reproduce moe-eval's native tasks on the bundled demo model: per-sample log-likelihoods within
# 1e-4, greedy flags equal, every reported metric equal (tools/harness/compare_native.py).
#
#   scripts/harness_agreement.sh [--limit N] [--out DIR]
#
# Needs python3 with venv and network access to PyPI the first time (the venv is kept in
# .build-harness/venv). Uses $MOE_EVAL_BIN, else builds the release binary. Exits non-zero on any
# disagreement, and prints "N passed, M failed".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIMIT=10
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --limit) LIMIT="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "harness_agreement.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/moe-eval-harness.XXXXXX")}"
mkdir -p "$OUT"

if [[ -z "${MOE_EVAL_BIN:-}" ]]; then
    (cd "$ROOT" && swift build -c release --product moe-eval >&2)
    MOE_EVAL_BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)/moe-eval"
fi

# The server reports max_model_len = max_seq_len (256 for the demo); lm-eval's API backend then keeps
# 255 tokens of context + continuation and predicts from 254 of them, which the native scorer's
# --max-length 254 reproduces (tools/harness/README.md).
MAX_SEQ_LEN="$(sed -n 's/.*"max_seq_len"[[:space:]]*:[[:space:]]*\([0-9]*\).*/\1/p' "$ROOT/assets/demo/model_args.json" | head -n1)"
NATIVE_MAX_LENGTH=$((MAX_SEQ_LEN - 2))

# The same original files the harness's task files read (test infrastructure, never a product default).
DATA="${DATA:-$ROOT/../shared/data}"

echo "[agreement] native runs (limit $LIMIT, max length $NATIVE_MAX_LENGTH)" >&2
"$MOE_EVAL_BIN" run --lm-eval-only --quiet --log-samples --lm-eval-limit "$LIMIT" --max-length "$NATIVE_MAX_LENGTH" --data-dir "$DATA" \
    --lm-eval-tasks arc_easy,hellaswag,lambada_openai,wikitext --output-dir "$OUT/native-0shot" >&2
"$MOE_EVAL_BIN" run --lm-eval-only --quiet --log-samples --lm-eval-limit "$LIMIT" --max-length "$NATIVE_MAX_LENGTH" --data-dir "$DATA" \
    --lm-eval-tasks mmlu_abstract_algebra,mmlu_high_school_geography --num-fewshot 2 --output-dir "$OUT/native-mmlu" >&2

echo "[agreement] lm-eval 0.4.13 over moe-eval serve" >&2
NATIVE_ARGS=()
for f in "$OUT"/native-0shot/eval_results_*.json "$OUT"/native-mmlu/eval_results_*.json; do
    [[ -f "$f" ]] || { echo "harness_agreement.sh: a native run wrote no results file in $OUT" >&2; exit 1; }
    NATIVE_ARGS+=(--native "$f")
done
bash "$ROOT/tools/harness/run_harness.sh" --moe-eval "$MOE_EVAL_BIN" --limit "$LIMIT" --mmlu-fewshot 2 \
    --out "$OUT/harness" "${NATIVE_ARGS[@]}"
cat "$OUT/harness/comparison.txt"
