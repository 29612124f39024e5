#!/usr/bin/env bash
# Benchmark (not a test): moe-eval's native tasks vs lm-eval 0.4.13 over `moe-eval serve`, same tasks,
# same documents, same model (the bundled demo unless --checkpoint/--config are given), one after the
# other on this machine. Prints a table of wall seconds per task and the ratio harness / native.
#
#   tools/bench/native_vs_harness.sh [--limit N] [--out DIR]
#
# Wall time on both sides is the whole command: process start, model load, data loading, scoring. The
# harness side also reports its own evaluation time (without its start-up) for reference.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIMIT=50
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --limit) LIMIT="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "native_vs_harness.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/moe-eval-native-vs-harness.XXXXXX")}"
mkdir -p "$OUT"
if [[ -z "${MOE_EVAL_BIN:-}" ]]; then
    (cd "$ROOT" && swift build -c release --product moe-eval >&2)
    MOE_EVAL_BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)/moe-eval"
fi
MAX_SEQ_LEN="$(sed -n 's/.*"max_seq_len"[[:space:]]*:[[:space:]]*\([0-9]*\).*/\1/p' "$ROOT/assets/demo/model_args.json" | head -n1)"

# Native: one process per harness task, so that start-up is counted the same way on both sides.
printf 'task\tnative_wall_seconds\n' > "$OUT/native.tsv"
native() {  # name, then run arguments
    local name="$1"; shift
    local start end
    start=$(date +%s.%N)
    "$MOE_EVAL_BIN" run --lm-eval-only --quiet --lm-eval-limit "$LIMIT" --max-length $((MAX_SEQ_LEN - 2)) \
        --data-dir "${DATA:-$ROOT/../shared/data}" --output-dir "$OUT/native/$name" "$@" >&2
    end=$(date +%s.%N)
    printf '%s\t%s\n' "$name" "$(awk "BEGIN { printf \"%.3f\", $end - $start }")" >> "$OUT/native.tsv"
}
native arc_easy_local --lm-eval-tasks arc_easy
native hellaswag_local --lm-eval-tasks hellaswag
native mmlu_pair_local --lm-eval-tasks mmlu_abstract_algebra,mmlu_high_school_geography --num-fewshot 2
native lambada_openai_local --lm-eval-tasks lambada_openai
native wikitext_local --lm-eval-tasks wikitext

bash "$ROOT/tools/harness/run_harness.sh" --moe-eval "$MOE_EVAL_BIN" --limit "$LIMIT" --mmlu-fewshot 2 --out "$OUT/harness" >&2

python3 - "$OUT" "$LIMIT" <<'EOF'
import csv, json, os, sys
out, limit = sys.argv[1], sys.argv[2]
native = {r["task"]: float(r["native_wall_seconds"]) for r in csv.DictReader(open(os.path.join(out, "native.tsv")), delimiter="\t")}
harness = json.load(open(os.path.join(out, "harness", "timings.json")))["tasks"]
print(f"| task (limit {limit}) | native wall s | harness wall s | harness evaluation s | harness wall / native wall |")
print("|---|---:|---:|---:|---:|")
tn = th = 0.0
for task, seconds in native.items():
    h = harness[task]
    tn += seconds; th += h["wall_seconds"]
    print(f"| {task} | {seconds:.1f} | {h['wall_seconds']:.1f} | {h['harness_evaluation_seconds']:.1f} | {h['wall_seconds'] / seconds:.1f}× |")
print(f"| total | {tn:.1f} | {th:.1f} | | {th / tn:.1f}× |")
EOF
