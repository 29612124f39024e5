#!/usr/bin/env bash
# Builds the libFuzzer targets (debug, -sanitize=fuzzer,address; cached in tools/fuzz/.build) and runs one
# target, or every one, for SECONDS each. Exits non-zero if any run crashes, leaks, runs out of memory or
# times out, and prints where the reproducer was written.
#
#   tools/fuzz/run.sh FuzzPickle 60      one target (or several: FuzzPickle,FuzzJSON)
#   tools/fuzz/run.sh all 30             every target in turn (CI: scripts/test.sh)
#   tools/fuzz/run.sh replay             every reproducer in tools/fuzz/findings, once: which still fail
#   tools/fuzz/run.sh list               the target names
#
# Environment: FUZZ_KEEP_GOING=1 (a campaign: go on past findings and count them), FUZZ_JOBS (build jobs,
# default 1), FUZZ_RSS_MB (default 2048), FUZZ_SUMMARY (a file to which one tab-separated figures line per run
# is appended), FUZZ_NICE (default 10), FUZZ_SKIP_BUILD=1 (reuse the last build, for parallel campaigns),
# FUZZ_SEED (a fixed libFuzzer seed; scripts/test.sh sets 1).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
targets=(FuzzPickle FuzzTorchZip FuzzDCPMetadata FuzzSafetensors FuzzJSON FuzzTrainConfig FuzzModelArgs
         FuzzTokenizerJSON FuzzTokenizerEncode FuzzTaskData FuzzParquet FuzzArrowStream FuzzKernelCacheEntry)

usage() { echo "usage: $0 TARGET[,TARGET…]|all SECONDS | replay | list   (targets: ${targets[*]})" >&2; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = list ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
replay=0
if [ "$1" = replay ] && [ $# -eq 1 ]; then replay=1; set -- all 1; fi
[ $# -eq 2 ] || usage
[[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "$0: SECONDS must be a positive whole number, got '$2'" >&2; exit 2; }
seconds=$2
if [ "$1" = all ]; then selected=("${targets[@]}")
else
  IFS=, read -r -a selected <<< "$1"
  for target in "${selected[@]}"; do
    [[ " ${targets[*]} " == *" $target "* ]] || { echo "$0: unknown target '$target' (known: ${targets[*]})" >&2; exit 2; }
  done
fi
rss_mb=${FUZZ_RSS_MB:-2048}
nice_level=${FUZZ_NICE:-10}

build_flags=(--package-path "$here" -Xswiftc -sanitize=fuzzer,address)
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  build_start=$(date +%s)
  nice -n "$nice_level" swift build "${build_flags[@]}" -j "${FUZZ_JOBS:-1}"
  echo "fuzz build: $(( $(date +%s) - build_start )) s"
fi
bin="$(swift build "${build_flags[@]}" --show-bin-path)"

# `replay`: runs every kept reproducer (tools/fuzz/findings/TARGET/*) once and says which still fail.
if [ $replay = 1 ]; then
  still=0
  for folder in "$here"/findings/*/; do
    target="$(basename "$folder")"
    for input in "$folder"*; do
      if SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1 \
         LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0" \
         FUZZ_TOKENIZER="$root/assets/tokenizers/demo-dsv3/tokenizer.json" \
         timeout 60 "$bin/$target" -timeout=10 -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" \
           "$input" > /dev/null 2>&1; then
        echo "passes      $target/$(basename "$input")"
      else
        echo "still fails $target/$(basename "$input")"; still=$((still + 1))
      fi
    done
  done
  echo "$still reproducer(s) still fail (leaks covered by lsan.supp pass by design)"
  [ $still -eq 0 ]; exit
fi

# Seeds: small files from the test fixtures and assets, copied at run time (plus tools/fuzz/seeds).
seed_files() {
  local fixtures="$root/Tests" assets="$root/assets"
  case "$1" in
    FuzzPickle) ls "$fixtures"/MoECheckpointTests/Fixtures/pickles/*.pkl
                find "$fixtures" "$assets" -name .metadata -size -64k ;;
    FuzzTorchZip) ls "$fixtures"/MoECheckpointTests/Fixtures/torchsave/*.pt ;;
    FuzzDCPMetadata) find "$fixtures" "$assets" \( -name .metadata -o -name '*.metadata' \) -size -64k ;;
    FuzzSafetensors) find "$fixtures" -name '*.safetensors' -size -64k ;;
    FuzzJSON) find "$fixtures" "$assets" -name '*.json' -size -16k ;;
    FuzzTrainConfig) find "$fixtures" "$assets" -name '*.toml' -size -16k ;;
    FuzzModelArgs) find "$fixtures" "$assets" \( -name 'model_args.json' -o -name 'variant.json' \) -size -16k ;;
    FuzzTokenizerJSON) ls "$assets"/tokenizers/*/tokenizer.json ;;
    FuzzTokenizerEncode) ls "$assets"/demo/demo_text.txt "$assets"/demo/README.md ;;
    FuzzTaskData) ;;
    FuzzParquet) ls "$fixtures"/MoEDataTests/Fixtures/*.parquet
                 find "$assets" -name '*.parquet' -size -64k ;;
    FuzzArrowStream) ls "$fixtures"/MoEDataTests/Fixtures/*.arrow ;;
    FuzzKernelCacheEntry) ;;
  esac
  if [ -d "$here/seeds/$1" ]; then find "$here/seeds/$1" -type f; fi
}

dictionary() {
  case "$1" in
    FuzzPickle|FuzzDCPMetadata) echo "$here/dictionaries/pickle.dict" ;;
    FuzzTorchZip) echo "$here/dictionaries/zip.dict" ;;
    FuzzJSON|FuzzSafetensors|FuzzModelArgs|FuzzTokenizerJSON|FuzzTaskData) echo "$here/dictionaries/json.dict" ;;
    FuzzTrainConfig) echo "$here/dictionaries/toml.dict" ;;
    FuzzKernelCacheEntry) echo "$here/dictionaries/kernelcache.dict" ;;
  esac
}

# FUZZ_SEED fixes libFuzzer's random seed: CI's short runs then mutate the same way on every run (a finding
# reproduces instead of appearing at random); campaigns leave it unset to explore.
seed_flag=()
if [ -n "${FUZZ_SEED:-}" ]; then seed_flag=(-seed="$FUZZ_SEED"); fi

failed=()
for target in "${selected[@]}"; do
  work="$here/.build/fuzz-work/$target"
  corpus="$work/corpus" seeds="$work/seeds" artifacts="$work/artifacts"
  mkdir -p "$corpus" "$seeds" "$artifacts"
  rm -f "$seeds"/* "$artifacts"/*
  n=0
  while IFS= read -r file; do
    [ -n "$file" ] || continue
    n=$((n + 1)); cp "$file" "$seeds/$n-$(basename "$file")"
  done < <(seed_files "$target")
  if [ "$target" = FuzzTokenizerJSON ]; then
    gzip -c "$root"/assets/tokenizers/demo-dsv3/tokenizer.json > "$seeds/tokenizer.json.gz"
  fi
  extra=()
  # A campaign (FUZZ_KEEP_GOING=1) keeps fuzzing past findings in a forked child, to count them all.
  [ "${FUZZ_KEEP_GOING:-0}" != 1 ] || extra+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  dict="$(dictionary "$target")"
  [ -z "$dict" ] || extra+=("-dict=$dict")
  scratch="$(mktemp -d "${TMPDIR:-/dev/shm}/moe-eval-fuzz.XXXXXX" 2>/dev/null || mktemp -d)"
  log="$work/last-run.log"
  echo "== $target: ${seconds} s, $(ls "$seeds" | wc -l) seeds, $(ls "$corpus" | wc -l) corpus inputs"
  set +e
  # The Swift runtime's own backtracer is switched off so that libFuzzer and AddressSanitizer see the trap.
  SWIFT_BACKTRACE=enable=no FUZZ_SCRATCH="$scratch" \
  FUZZ_TOKENIZER="$root/assets/tokenizers/demo-dsv3/tokenizer.json" \
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0" \
    nice -n "$nice_level" "$bin/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss_mb" \
      -malloc_limit_mb="$rss_mb" -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" "${seed_flag[@]}" \
      "$corpus" "$seeds" > "$log" 2>&1
  status=$?
  set -e
  rm -rf "$scratch"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  findings=$(ls "$artifacts" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true)
  if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
    # Fork mode reports "#N: cov: C ft: F corp: K exec/s: R oom/timeout/crash: O/T/C time: Ss" instead.
    last=$(grep -E '^#[0-9]+: cov: ' "$log" | tail -1 || true)
    execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<< "$last")
    rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<< "$last")
    cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<< "$last" || true) $(grep -oE 'oom/timeout/crash: [0-9/]+' <<< "$last" || true)"
  fi
  line="$target	rc=$status	findings=$findings	${seconds}s	execs=${execs:-?}	exec/s=${rate:-?}	${cov:-cov: ?}	corpus=$(ls "$corpus" | wc -l)	peak_rss_mb=${rss:-?}"
  echo "$line"
  [ -z "${FUZZ_SUMMARY:-}" ] || echo "$line" >> "$FUZZ_SUMMARY"
  # A campaign exits 0 past the findings it kept going after; they fail the run all the same.
  if [ $status -eq 0 ] && [ "$findings" -gt 0 ]; then status=1; fi
  if [ $status -ne 0 ]; then
    failed+=("$target")
    grep -E '^(==[0-9]+==ERROR|SUMMARY|ALARM|.*Test unit written to|Fatal error|.*out-of-memory)' "$log" | head -8 >&2 || true
    echo "$target FAILED (exit $status); reproducer(s) in $artifacts (copy to tools/fuzz/findings/$target/), log $log" >&2
    echo "  replay: SWIFT_BACKTRACE=enable=no $bin/$target REPRODUCER" >&2
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing passed: ${selected[*]} (${seconds} s each)"
