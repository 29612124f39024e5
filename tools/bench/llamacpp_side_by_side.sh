#!/usr/bin/env bash
# Benchmark (dev-only, never in CI): moe-eval against llama.cpp on the same DeepSeek-V3 weights, CPU and threads.
#
#   tools/bench/llamacpp_side_by_side.sh [--shapes "16B debugmodel"] [--dtypes "f32 bf16"] [--threads 2]
#                                        [--rounds 3] [--prompt 512] [--decode 64] [--check-tokens 48]
#                                        [--no-llama-bench]
#
# 1. llama.cpp: the sdist of llama-cpp-python $LLAMA_CPP_PYTHON_VERSION from PyPI (it vendors llama.cpp) built
#    once with cmake (Release, -march=native, shared libraries) under $WORK_DIR; llama-bench and libllama are kept.
# 2. Weights: `moe-eval convert --random-weights` (bench's deterministic random weights) → HF folder in fp32 and
#    bf16: a DeepSeek-V3 with 16B layer shapes on 2 layers (1 dense + 1 MoE) and the debugmodel flavor; then
#    llama.cpp's convert_hf_to_gguf.py → GGUF f32 / bf16 (its reading of config.json gets n_group = 1 and
#    q_lora_rank = 0 where moe-eval writes null; see llamacpp_side_by_side.py).
# 3. Agreement: `moe-eval forward` on the HF folder and llama.cpp's logits on the GGUF, same token ids of a text:
#    mean next-token log-likelihood and decisive top-1 tokens within a tolerance (f32 $F32_TOLERANCE,
#    bf16 $BF16_TOLERANCE); any disagreement stops the script before timing.
# 4. Timing: rounds alternate llama-bench (pp = prompt of --prompt tokens, batch 1, last-token logits;
#    tg = --decode tokens) and `moe-eval bench --batch 1 --seq-len PROMPT --decode-tokens DECODE`, same threads;
#    medians over the rounds and the ratio moe-eval / llama.cpp per model and dtype. --no-llama-bench builds
#    only libllama and times it through the llama-cpp-python bindings the same way (a shorter build).
#
# Variables: MOE_EVAL_BIN (default: this checkout's release build, built if missing), MOE_EVAL_VENV (a Python
# with torch, numpy and transformers: tools/reference's venv, default .venv-ref), WORK_DIR (default
# ${TMPDIR:-/tmp}/moe-eval-llamacpp; holds the build and several GB of weights), LLAMA_CPP_DIR (an extracted
# llama.cpp source tree instead of the sdist's), TOKENIZER (an HF tokenizer folder with BPE merges, which
# llama.cpp requires; default the repository's demo DeepSeek-V3 tokenizer, cut to each model's vocabulary).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LLAMA_CPP_PYTHON_VERSION=0.3.36
SHAPES="16B debugmodel"
DTYPES="f32 bf16"
THREADS=2
ROUNDS=3
PROMPT=512
DECODE=64
CHECK_TOKENS=48
LLAMA_BENCH_TOOL=1
F32_TOLERANCE=1e-3
BF16_TOLERANCE=5e-2
while [[ $# -gt 0 ]]; do
    case "$1" in
        --shapes) SHAPES="$2"; shift 2 ;;
        --dtypes) DTYPES="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --prompt) PROMPT="$2"; shift 2 ;;
        --decode) DECODE="$2"; shift 2 ;;
        --check-tokens) CHECK_TOKENS="$2"; shift 2 ;;
        --no-llama-bench) LLAMA_BENCH_TOOL=0; shift ;;
        *) echo "llamacpp_side_by_side.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
MOE_EVAL_VENV="${MOE_EVAL_VENV:-$ROOT/.venv-ref}"
PYTHON="$MOE_EVAL_VENV/bin/python"
WORK_DIR="${WORK_DIR:-${TMPDIR:-/tmp}/moe-eval-llamacpp}"
TOKENIZER="${TOKENIZER:-$ROOT/assets/tokenizers/demo-dsv3}"
mkdir -p "$WORK_DIR"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
[[ -x "$PYTHON" ]] || { echo "no Python at $PYTHON: set MOE_EVAL_VENV (tools/reference/README.md)" >&2; exit 1; }
[[ -f "$TOKENIZER/tokenizer.json" ]] || { echo "no tokenizer.json in $TOKENIZER: set TOKENIZER" >&2; exit 1; }

# --- llama.cpp, built once ---
if [[ -z "${LLAMA_CPP_DIR:-}" ]]; then
    SDIST_DIR="$WORK_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
    if [[ ! -d "$SDIST_DIR" ]]; then
        log "downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist"
        # Only this package from source: its build backend comes as wheels, so pip needs no compiler for it.
        "$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$WORK_DIR/sdist"
        tar -xzf "$WORK_DIR/sdist/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$WORK_DIR"
    fi
    LLAMA_CPP_DIR="$SDIST_DIR/vendor/llama.cpp"
    BINDINGS_DIR="$SDIST_DIR"
else
    BINDINGS_DIR="${LLAMA_CPP_PYTHON_DIR:?with LLAMA_CPP_DIR set, LLAMA_CPP_PYTHON_DIR names the llama-cpp-python tree}"
fi
LLAMA_BUILD="$WORK_DIR/llama-build"
LLAMA_TARGETS=(llama)
[[ "$LLAMA_BENCH_TOOL" == 1 ]] && LLAMA_TARGETS+=(llama-bench)
if [[ ! -f "$LLAMA_BUILD/bin/libllama.so" || ( "$LLAMA_BENCH_TOOL" == 1 && ! -x "$LLAMA_BUILD/bin/llama-bench" ) ]]; then
    command -v cmake > /dev/null || { echo "cmake missing: apt-get install cmake" >&2; exit 1; }
    log "building llama.cpp (Release, native CPU flags) in $LLAMA_BUILD"
    cmake -S "$LLAMA_CPP_DIR" -B "$LLAMA_BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=ON \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF > "$WORK_DIR/cmake-configure.log"
    cmake --build "$LLAMA_BUILD" --config Release -j "${BUILD_JOBS:-1}" --target "${LLAMA_TARGETS[@]}" > "$WORK_DIR/cmake-build.log"
fi
export LLAMA_CPP_LIB_PATH="$LLAMA_BUILD/bin"
export PYTHONPATH="$BINDINGS_DIR${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import diskcache, jinja2" 2> /dev/null || "$PYTHON" -m pip install --quiet diskcache jinja2
LLAMA_BENCH="$LLAMA_BUILD/bin/llama-bench"

# --- moe-eval ---
if [[ -z "${MOE_EVAL_BIN:-}" ]]; then
    (cd "$ROOT" && swift build -c release -j 1 --product moe-eval >&2)
    MOE_EVAL_BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)/moe-eval"
fi
# --compute exists once bf16 compute has landed; before that bench is always fp32 compute.
COMPUTE_FLAG=0
"$MOE_EVAL_BIN" bench --help | grep -q -- "--compute" && COMPUTE_FLAG=1
FORWARD_COMPUTE_FLAG=0
"$MOE_EVAL_BIN" forward --help | grep -q -- "--compute" && FORWARD_COMPUTE_FLAG=1
compute_args() {  # dtype, whether the subcommand has --compute
    [[ "$2" == 1 ]] || return 0
    if [[ "$1" == bf16 ]]; then echo "--compute auto"; else echo "--compute fp32"; fi
}

# --- weights: moe-eval's export, then llama.cpp's converter ---
make_model() {  # shape, dtype → $WORK_DIR/hf-SHAPE-DTYPE and $WORK_DIR/SHAPE-DTYPE.gguf
    local shape="$1" dtype="$2" hf="$WORK_DIR/hf-$1-$2" gguf="$WORK_DIR/$1-$2.gguf"
    local layers=()
    [[ "$shape" == 16B ]] && layers=(--layers 2)
    if [[ ! -f "$hf/tokenizer.json" ]]; then
        log "moe-eval convert --random-weights --flavor $shape ${layers[*]} --dtype ${dtype/f32/fp32}"
        "$MOE_EVAL_BIN" convert --random-weights --flavor "$shape" "${layers[@]}" --dtype "${dtype/f32/fp32}" \
            --no-tokenizer --output "$hf" --overwrite --quiet > /dev/null
        # The tokenizer is cut to the model's vocabulary (ids, merges and added tokens past it dropped).
        "$PYTHON" - "$hf" "$TOKENIZER" <<'EOF'
import json, shutil, sys
from pathlib import Path
hf, source = Path(sys.argv[1]), Path(sys.argv[2])
vocab_size = json.loads((hf / "config.json").read_text())["vocab_size"]
tokenizer = json.loads((source / "tokenizer.json").read_text())
model = tokenizer["model"]
model["vocab"] = {piece: i for piece, i in model["vocab"].items() if i < vocab_size}
def kept(merge):
    left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
    return left in model["vocab"] and right in model["vocab"] and left + right in model["vocab"]
model["merges"] = [m for m in model.get("merges", []) if kept(m)]
tokenizer["added_tokens"] = [t for t in tokenizer.get("added_tokens", []) if t["id"] < vocab_size]
(hf / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
if (source / "tokenizer_config.json").exists():
    shutil.copy(source / "tokenizer_config.json", hf / "tokenizer_config.json")
EOF
    fi
    if [[ ! -f "$gguf" ]]; then
        log "convert_hf_to_gguf.py --outtype $dtype ($shape)"
        "$PYTHON" "$ROOT/tools/bench/llamacpp_side_by_side.py" convert "$LLAMA_CPP_DIR" "$hf" "$dtype" "$gguf" \
            > "$WORK_DIR/gguf-$shape-$dtype.log" 2>&1 || { tail -20 "$WORK_DIR/gguf-$shape-$dtype.log" >&2; exit 1; }
    fi
}

# moe-eval follows TorchTitan, whose final norm (era 0.2) uses float32's eps; llama.cpp has one eps for
# every norm, the config's rms_norm_eps. The same eps on both sides compares the same function.
norm_eps() { "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["rms_norm_eps"])' "$1/config.json"; }

# --- agreement on the same weights ---
check() {  # shape, dtype
    local shape="$1" dtype="$2" tolerance="$F32_TOLERANCE" hf="$WORK_DIR/hf-$1-$2" tokens="$WORK_DIR/check-tokens-$1.json"
    [[ "$dtype" == bf16 ]] && tolerance="$BF16_TOLERANCE"
    "$PYTHON" - "$hf/tokenizer.json" "$ROOT/assets/demo/demo_text.txt" "$CHECK_TOKENS" "$tokens" <<'EOF'
import json, sys
from tokenizers import Tokenizer
ids = Tokenizer.from_file(sys.argv[1]).encode(open(sys.argv[2]).read(), add_special_tokens=False).ids[: int(sys.argv[3])]
json.dump({"tokens": [ids]}, open(sys.argv[4], "w"))
EOF
    log "agreement $shape $dtype"
    # shellcheck disable=SC2046
    "$MOE_EVAL_BIN" forward --checkpoint "$hf" --tokens-file "$tokens" --threads "$THREADS" --final-norm-eps "$(norm_eps "$hf")" \
        $(compute_args "$dtype" "$FORWARD_COMPUTE_FLAG") --output "$WORK_DIR/forward-$shape-$dtype.json" --overwrite
    echo "agreement $shape $dtype:"
    "$PYTHON" "$ROOT/tools/bench/llamacpp_side_by_side.py" agree "$WORK_DIR/$shape-$dtype.gguf" "$tokens" \
        "$WORK_DIR/forward-$shape-$dtype.json" "$tolerance" "$THREADS"
    rm -f "$WORK_DIR/forward-$shape-$dtype.json"
}

for shape in $SHAPES; do
    for dtype in $DTYPES; do
        make_model "$shape" "$dtype"
        check "$shape" "$dtype"
    done
done

# --- timing: alternating rounds ---
echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); flags:$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|avx512f|avx512_bf16|amx_bf16|amx_tile' | tr '\n' ' ' | sed 's/^/ /')"
echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
RESULTS="$WORK_DIR/results.tsv"
printf 'round\tshape\tdtype\tengine\tprefill_tok_s\tdecode_tok_s\n' > "$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
    for shape in $SHAPES; do
        for dtype in $DTYPES; do
            log "round $round: llama.cpp $shape $dtype"
            if [[ "$LLAMA_BENCH_TOOL" == 1 ]]; then
                "$LLAMA_BENCH" -m "$WORK_DIR/$shape-$dtype.gguf" -p "$PROMPT" -n "$DECODE" -b "$PROMPT" -ub "$PROMPT" \
                    -t "$THREADS" -r 1 -o jsonl > "$WORK_DIR/llama-bench.jsonl" 2> "$WORK_DIR/llama-bench.log"
                "$PYTHON" - "$WORK_DIR/llama-bench.jsonl" "$round" "$shape" "$dtype" >> "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0)
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\tllama.cpp\t{pp:.2f}\t{tg:.2f}")
EOF
            else
                read -r pp tg < <("$PYTHON" "$ROOT/tools/bench/llamacpp_side_by_side.py" time "$WORK_DIR/$shape-$dtype.gguf" \
                    "$PROMPT" "$DECODE" "$THREADS")
                printf '%s\t%s\t%s\tllama.cpp\t%s\t%s\n' "$round" "$shape" "$dtype" "$pp" "$tg" >> "$RESULTS"
            fi
            log "round $round: moe-eval bench $shape $dtype"
            # shellcheck disable=SC2046
            "$MOE_EVAL_BIN" bench --checkpoint "$WORK_DIR/hf-$shape-$dtype" --batch 1 --seq-len "$PROMPT" \
                --decode-tokens "$DECODE" --iterations 1 --skip-routing --threads "$THREADS" \
                --final-norm-eps "$(norm_eps "$WORK_DIR/hf-$shape-$dtype")" \
                $(compute_args "$dtype" "$COMPUTE_FLAG") --json > "$WORK_DIR/moe-eval-bench.json" 2> "$WORK_DIR/moe-eval-bench.log"
            "$PYTHON" - "$WORK_DIR/moe-eval-bench.json" "$round" "$shape" "$dtype" >> "$RESULTS" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\tmoe-eval\t{r['prefill_tokens_per_s']:.2f}\t{r['decode_tokens_per_s']:.2f}")
EOF
        done
    done
done

"$PYTHON" - "$RESULTS" "$THREADS" "$PROMPT" "$DECODE" "$ROUNDS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
threads, prompt, decode, rounds = sys.argv[2:6]
print(f"\n{rounds} alternating rounds, {threads} threads, prompt {prompt} (batch 1), decode {decode} tokens; medians (tok/s)\n")
print("| model | weights | prefill llama.cpp | prefill moe-eval | ratio | decode llama.cpp | decode moe-eval | ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
keys = []
for r in rows:
    if (r["shape"], r["dtype"]) not in keys:
        keys.append((r["shape"], r["dtype"]))
for shape, dtype in keys:
    def median(engine, field):
        return statistics.median(float(r[field]) for r in rows if (r["shape"], r["dtype"], r["engine"]) == (shape, dtype, engine))
    pl, pm = median("llama.cpp", "prefill_tok_s"), median("moe-eval", "prefill_tok_s")
    dl, dm = median("llama.cpp", "decode_tok_s"), median("moe-eval", "decode_tok_s")
    name = "DeepSeek-V3 16B shapes, 2 layers" if shape == "16B" else f"DeepSeek-V3 {shape}"
    print(f"| {name} | {dtype} | {pl:,.1f} | {pm:,.1f} | {pm / pl:.2f}× | {dl:,.1f} | {dm:,.1f} | {dm / dl:.2f}× |")
EOF
echo "load average after timing: $(cut -d' ' -f1-3 /proc/loadavg); per-round figures: $RESULTS"
