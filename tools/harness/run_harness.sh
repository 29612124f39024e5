#!/usr/bin/env bash
# The real lm-evaluation-harness (lm-eval 0.4.13, --model local-completions) against `moe-eval serve`,
# fully offline, on project task files for the local data in ../shared/data.
#
#   tools/harness/run_harness.sh [options]
#
# Options (all optional):
#   --checkpoint DIR       model to serve (default: the bundled demo model)
#   --config FILE | --model-args FILE | --flavor NAME | --tokenizer PATH   passed on to `moe-eval serve`
#   --tasks "T1 T2 …"      default: arc_easy_local hellaswag_local mmlu_pair_local lambada_openai_local wikitext_local
#   --limit N              documents per task (default 5)
#   --mmlu-fewshot K       few-shot examples for the MMLU subjects (default 2; the other tasks are 0-shot)
#   --max-length N         lm-eval's max_length (default: the server's max_model_len, i.e. max_seq_len)
#   --concurrent N         lm-eval's num_concurrent (default 1: one request at a time)
#   --out DIR              output folder (default .build-harness/out/<UTC time>)
#   --venv DIR             lm-eval venv, created when missing (default .build-harness/venv), with the
#                          dependency versions of tools/harness/constraints.txt
#   --moe-eval BIN         moe-eval binary (default: `swift build -c release` in $SWIFT_SCRATCH, default .build)
#   --data DIR             benchmark data (default ../shared/data)
#   --native FILE          a native results file to compare with (tools/harness/compare_native.py);
#                          repeat it for several native runs (e.g. MMLU few-shot and the rest 0-shot)
#
# Writes to the output folder: server.log, tasks/ (the rendered task files), lm_eval/<task>/… (the
# harness's results_*.json and samples_*.jsonl), timings.json (wall time per task), and, with --native,
# comparison.txt. Exits non-zero if the server or the harness fails, or if the comparison does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tools/harness"
DATA="$ROOT/../shared/data"
TASKS="arc_easy_local hellaswag_local mmlu_pair_local lambada_openai_local wikitext_local"
LIMIT=5
MMLU_FEWSHOT=2
MAX_LENGTH=""
OUT=""
VENV="$ROOT/.build-harness/venv"
MOE_EVAL="${MOE_EVAL:-}"
NATIVE=()
CONCURRENT=1
SERVE_ARGS=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --checkpoint|--config|--model-args|--flavor|--tokenizer) SERVE_ARGS+=("$1" "$2"); shift 2 ;;
        --tasks) TASKS="${2//,/ }"; shift 2 ;;
        --limit) LIMIT="$2"; shift 2 ;;
        --mmlu-fewshot) MMLU_FEWSHOT="$2"; shift 2 ;;
        --max-length) MAX_LENGTH="$2"; shift 2 ;;
        --concurrent) CONCURRENT="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --venv) VENV="$2"; shift 2 ;;
        --moe-eval) MOE_EVAL="$2"; shift 2 ;;
        --data) DATA="$2"; shift 2 ;;
        --native) NATIVE+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_harness.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

[[ -d "$DATA" ]] || { echo "run_harness.sh: no benchmark data at $DATA (pass --data DIR)" >&2; exit 2; }
DATA="$(cd "$DATA" && pwd)"
OUT="${OUT:-$ROOT/.build-harness/out/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
log() { echo "[harness] $*" >&2; }

# 1. lm-eval in its own venv (PyPI; the [api] extra brings aiohttp/tenacity, and no torch is needed).
if [[ ! -x "$VENV/bin/lm_eval" ]]; then
    log "creating $VENV with lm-eval[api]==0.4.13"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$HERE/constraints.txt" "lm-eval[api]==0.4.13"
fi
PY="$VENV/bin/python"
"$PY" -c 'import importlib.metadata as m, sys; v = m.version("lm_eval"); sys.exit(0 if v == "0.4.13" else f"lm_eval {v} in the venv, not 0.4.13")'

# 2. The moe-eval binary.
if [[ -z "$MOE_EVAL" ]]; then
    SCRATCH="${SWIFT_SCRATCH:-$ROOT/.build}"
    log "building moe-eval (release, $SCRATCH)"
    (cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product moe-eval >&2)
    MOE_EVAL="$(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/moe-eval"
fi
[[ -x "$MOE_EVAL" ]] || { echo "run_harness.sh: $MOE_EVAL is not an executable" >&2; exit 2; }

# 3. Task files with absolute data paths, and WikiText's documents split out of the raw file.
mkdir -p "$OUT/tasks"
for template in "$HERE"/tasks/*; do
    sed -e "s#@DATA@#$DATA#g" -e "s#@WORK@#$OUT#g" -e "s#@MMLU_FEWSHOT@#$MMLU_FEWSHOT#g" "$template" > "$OUT/tasks/$(basename "$template")"
done
"$PY" "$ROOT/tools/reference/wikitext_pages.py" "$DATA/wikitext2/wikitext-2-raw-v1_test_nonblank_crlf.raw" "$OUT/wikitext2_test_pages.jsonl"

# 4. The server, on a free loopback port it picks itself.
SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop_server EXIT
"$MOE_EVAL" serve --host 127.0.0.1 --port 0 ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} > "$OUT/server.log" 2>&1 &
SERVER_PID=$!
PORT=""
for _ in $(seq 600); do
    PORT="$(sed -n 's#^listening on http://127\.0\.0\.1:\([0-9]*\).*#\1#p' "$OUT/server.log" | head -n1)"
    [[ -n "$PORT" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; echo "run_harness.sh: moe-eval serve exited" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$PORT" ]] || { cat "$OUT/server.log" >&2; echo "run_harness.sh: moe-eval serve did not start within 60 s" >&2; exit 1; }
BASE="http://127.0.0.1:$PORT"
read -r MODEL_NAME MAX_MODEL_LEN < <("$PY" - "$BASE" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/v1/models", timeout=10) as r:
    model = json.load(r)["data"][0]
print(model["id"], model["max_model_len"])
EOF
)
MAX_LENGTH="${MAX_LENGTH:-$MAX_MODEL_LEN}"
log "serving $MODEL_NAME on $BASE (max_model_len $MAX_MODEL_LEN; lm-eval max_length $MAX_LENGTH)"

# 5. One harness run per task, timed.
MODEL_ARGS="model=$MODEL_NAME,base_url=$BASE/v1/completions,tokenizer_backend=remote,max_length=$MAX_LENGTH,num_concurrent=$CONCURRENT,max_retries=1,timeout=600"
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
export HF_DATASETS_CACHE="${HF_DATASETS_CACHE:-$ROOT/.build-harness/hf-datasets-cache}"
TIMINGS="$OUT/timings.tsv"
printf 'task\twall_seconds\n' > "$TIMINGS"
health() { "$PY" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "/health", timeout=10).read().decode())' "$BASE"; }
: > "$OUT/health.jsonl"
health >> "$OUT/health.jsonl"
for task in $TASKS; do
    log "lm_eval $task (limit $LIMIT)"
    start=$(date +%s.%N)
    (cd "$OUT" && "$VENV/bin/lm_eval" run --model local-completions --model_args "$MODEL_ARGS" \
        --include_path "$OUT/tasks" --tasks "$task" --limit "$LIMIT" --log_samples \
        --seed 0,1234,1234,1234 --output_path "$OUT/lm_eval/$task") > "$OUT/lm_eval_$task.log" 2>&1 \
        || { tail -n 40 "$OUT/lm_eval_$task.log" >&2; echo "run_harness.sh: lm_eval failed on $task (log: $OUT/lm_eval_$task.log)" >&2; exit 1; }
    end=$(date +%s.%N)
    printf '%s\t%s\n' "$task" "$(awk "BEGIN { printf \"%.3f\", $end - $start }")" >> "$TIMINGS"
    sed -n '/^|/p' "$OUT/lm_eval_$task.log" >&2
    health >> "$OUT/health.jsonl"
done
stop_server
trap - EXIT

"$PY" - "$OUT" "$LIMIT" "$MAX_LENGTH" "$MMLU_FEWSHOT" "$MOE_EVAL" <<'EOF'
import csv, glob, json, os, platform, sys
out, limit, max_length, fewshot, binary = sys.argv[1:6]
rows = list(csv.DictReader(open(os.path.join(out, "timings.tsv")), delimiter="\t"))
served = [json.loads(line)["served"] for line in open(os.path.join(out, "health.jsonl"))]
tasks = {}
for i, row in enumerate(rows):
    results = sorted(glob.glob(os.path.join(out, "lm_eval", row["task"], "**", "results_*.json"), recursive=True))
    info = json.load(open(results[-1])) if results else {}
    tasks[row["task"]] = {
        "wall_seconds": float(row["wall_seconds"]),
        "harness_evaluation_seconds": float(info.get("total_evaluation_time_seconds", "nan")),
        "documents": {t: n.get("effective") for t, n in info.get("n-samples", {}).items()},
        # What the server did for this task: requests, tokens, and seconds spent in the model.
        "server": {k: round(served[i + 1][k] - served[i][k], 6) for k in served[i]},
    }
json.dump({
    "what": "lm-eval 0.4.13 local-completions over moe-eval serve, one lm_eval process per task; "
            "wall_seconds includes the harness's start-up (task indexing, dataset loading)",
    "limit": int(limit), "max_length": int(max_length), "mmlu_fewshot": int(fewshot),
    "moe_eval": binary, "machine": platform.machine(), "cpus": os.cpu_count(),
    "tasks": tasks, "total_wall_seconds": round(sum(t["wall_seconds"] for t in tasks.values()), 3),
}, open(os.path.join(out, "timings.json"), "w"), indent=2)
EOF
log "timings: $(tr '\n' ' ' < "$TIMINGS")"
log "outputs in $OUT"

if [[ ${#NATIVE[@]} -gt 0 ]]; then
    "$PY" "$HERE/compare_native.py" --harness "$OUT/lm_eval" --native "${NATIVE[@]}" > "$OUT/comparison.txt" \
        || { cat "$OUT/comparison.txt"; echo "run_harness.sh: the harness and the native run disagree ($OUT/comparison.txt)" >&2; exit 1; }
    tail -n 1 "$OUT/comparison.txt"
fi
