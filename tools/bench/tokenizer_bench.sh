#!/usr/bin/env bash
# Encode throughput on tinyshakespeare: moe-eval's Swift tokenizer (release build) beside the
# HuggingFace `tokenizers` library, single-threaded, in one run. Dev-only benchmark, not a test.
#
#   tools/bench/tokenizer_bench.sh                 # uses python3; or PYTHON=/path/to/python
#
# Needs tokenizers as pinned in tools/reference/requirements-tokenizers.txt and ../shared/data.
# Both sides encode the same 40,000 lines one call per line without special tokens, and only the
# encode calls are timed (best of REPEATS runs); the library is also timed with encode_batch.
# The ids of both sides are compared on every line.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DATA="${DATA:-$ROOT/../shared/data}"
PYTHON="${PYTHON:-python3}"
SCRATCH="${SCRATCH:-$ROOT/.build-bench}"
REPEATS="${REPEATS:-3}"
TEXT="$DATA/tinyshakespeare/input.txt"
export TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1

swift build -c release --scratch-path "$SCRATCH" --product moe-eval >&2
MOE_EVAL="$SCRATCH/release/moe-eval"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "| tokenizer | Swift encode (MB/s) | tokenizers $("$PYTHON" -c 'import tokenizers; print(tokenizers.__version__)') encode, per line (MB/s) | encode_batch (MB/s) | Swift / best library | ids identical |"
echo "|---|---|---|---|---|---|"
for spec in "gpt2:$DATA/tokenizers/gpt2_olmo_test_fixture" "dolma2:$DATA/tokenizers/olmo_dolma2" \
            "demo-dsv3:$ROOT/assets/tokenizers/demo-dsv3"; do
    name="${spec%%:*}"
    folder="${spec#*:}"
    best_swift=0
    for _ in $(seq "$REPEATS"); do
        rate=$("$MOE_EVAL" tokenize --tokenizer "$folder" --input "$TEXT" --no-special --stats \
                   2>"$WORK/stats" >"$WORK/swift.txt"; sed -E 's/.*\(([0-9.]+) MB\/s.*/\1/' "$WORK/stats")
        best_swift=$(awk -v a="$best_swift" -v b="$rate" 'BEGIN { print (b > a) ? b : a }')
    done
    read -r line_rate batch_rate < <("$PYTHON" - "$folder" "$TEXT" "$REPEATS" "$WORK/hf.txt" <<'EOF'
import gzip, json, os, sys, time
from tokenizers import Tokenizer

folder, text_path, repeats, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
path = os.path.join(folder, "tokenizer.json")
if os.path.exists(path):
    tokenizer = Tokenizer.from_file(path)
else:
    with gzip.open(path + ".gz", "rb") as f:
        tokenizer = Tokenizer.from_str(f.read().decode("utf-8"))
data = open(text_path, "rb").read()
text = data.decode("utf-8")
lines = text.split("\n")
if text.endswith("\n"):
    lines.pop()
lines = [line[:-1] if line.endswith("\r") else line for line in lines]
size = sum(len(line.encode("utf-8")) for line in lines)
best_line = best_batch = float("inf")
for _ in range(repeats):
    seconds = 0.0
    encoded = []
    for line in lines:
        start = time.perf_counter()
        ids = tokenizer.encode(line, add_special_tokens=False).ids
        seconds += time.perf_counter() - start
        encoded.append(ids)
    best_line = min(best_line, seconds)
    start = time.perf_counter()
    tokenizer.encode_batch(lines, add_special_tokens=False)
    best_batch = min(best_batch, time.perf_counter() - start)
with open(out_path, "w") as f:
    for ids in encoded:
        f.write(json.dumps(ids) + "\n")
print(f"{size / best_line / 1e6:.2f} {size / best_batch / 1e6:.2f}")
EOF
)
    if cmp -s "$WORK/swift.txt" "$WORK/hf.txt"; then same=yes; else same=NO; fi
    ratio=$(awk -v s="$best_swift" -v a="$line_rate" -v b="$batch_rate" 'BEGIN { m = (a > b) ? a : b; printf "%.1fx", s / m }')
    echo "| $name | $best_swift | $line_rate | $batch_rate | $ratio | $same |"
done
