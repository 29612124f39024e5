#!/usr/bin/env bash
# The GPU check of issue 17, for a machine with an NVIDIA GPU and no Swift toolchain. Run from the repository root
# after tools/gpu/pack.sh made .gpu-pack/moe-eval-gpu.tar.xz here (device tool: carry [".gpu-pack"]):
#   bash tools/gpu/check.sh
# 1. forward --device cuda on every DeepSeek-V3 fixture vs the committed TorchTitan references
#    (bf16 compute: relative logit error ≤ 2e-2, routed-expert agreement ≥ 99 % of token-slots);
# 2. run --preset 1min on cuda and on the CPU: the results files have the same schema (key paths and types);
# 3. bench on 16B-shaped layers (random bf16 weights): prefill at 4k and 16k tokens per forward, decode at batch 1,
#    TFLOP/s and MFU against the H100's 989 dense bf16 TFLOP/s; the same shapes in PyTorch eager bf16.
# Prints one table; exits non-zero on any failed check. Environment: MOE_EVAL_GPU_LAYERS (default 2),
# MOE_EVAL_GPU_PEAK_TFLOPS (989), MOE_EVAL_GPU_HBM_BYTES_PER_S (from the device name: H100 SXM 3.35e12, H200 4.8e12),
# MOE_EVAL_GPU_PREFILL (prefill tokens, default "4096 16384"); MOE_EVAL_CHECK_DEVICE=cpu dry-runs the script itself;
# MOE_EVAL_CHECK_STEPS (default "forward run bench torch") picks the parts.
set -uo pipefail
cd "$(dirname "$0")/../.."
archive="${MOE_EVAL_GPU_PACK:-.gpu-pack}/moe-eval-gpu.tar.xz"
[ -f "$archive" ] || { echo "check: $archive is missing (run tools/gpu/pack.sh where Swift is, then carry .gpu-pack)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "check: python3 is needed for the comparisons" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xJf "$archive" || { echo "check: cannot unpack $archive" >&2; exit 2; }
export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_CACHE_HOME="$work/cache"
bin="$work/bin/moe-eval"
layers="${MOE_EVAL_GPU_LAYERS:-2}"
peak_tflops="${MOE_EVAL_GPU_PEAK_TFLOPS:-989}"
device="${MOE_EVAL_CHECK_DEVICE:-cuda}"
prefill_sizes="${MOE_EVAL_GPU_PREFILL:-4096 16384}"
steps=" ${MOE_EVAL_CHECK_STEPS:-forward run bench torch} "
step() { case "$steps" in *" $1 "*) echo "check: $1 …" >&2; return 0 ;; *) return 1 ;; esac; }
failures=0
table=()
add() { table+=("$(printf '%-44s %-46s %s' "$1" "$2" "$3")"); [ "$3" = FAIL ] && failures=$((failures + 1)); return 0; }

gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
echo "device: ${gpu:-unknown (nvidia-smi absent)}; $(date -u +%Y-%m-%dT%H:%MZ)"
case "$gpu" in
  *H200*) hbm_default=4.8e12 ;;
  *H100*PCIe*) hbm_default=2.0e12 ;;
  *H100*) hbm_default=3.35e12 ;;
  *A100*) hbm_default=2.0e12 ;;
  *) hbm_default=3.35e12 ;;
esac
hbm="${MOE_EVAL_GPU_HBM_BYTES_PER_S:-$hbm_default}"

# 1. Fidelity against TorchTitan.
step forward && for dir in "$work"/fixtures/dsv3/*/; do
  v="$(basename "$dir")"
  if ! "$bin" forward --device "$device" --checkpoint "$dir/checkpoint" --model-args "$dir/model_args.json" \
    --tokens-file "$dir/tokens.json" --output "$work/$v.json" 2> "$work/$v.err"; then
    add "forward $v" "$(head -c 200 "$work/$v.err" | tr '\n' ' ')" FAIL
    continue
  fi
  line="$(python3 "$work/compare_forward.py" "$work/$v.json" "$dir/expected.json" "$v")"
  status=PASS; case "$line" in *FAIL) status=FAIL ;; esac
  add "forward $v" "$(echo "$line" | sed -E 's/^[^ ]+ +//; s/ +(PASS|FAIL)$//')" "$status"
done

# 2. run --preset 1min: the same results schema as the CPU run (the bundled demo model; assets/ is in the tree).
if step run; then
for run in cpu "$device"; do
  rm -rf "$work/run-$run"
  if "$bin" run --preset 1min --device "$run" --output-dir "$work/run-$run" > "$work/run-$run.log" 2>&1; then
    echo ok > "$work/run-$run.ok"
  fi
done
if [ -f "$work/run-cpu.ok" ] && [ -f "$work/run-$device.ok" ]; then
  schema="$(python3 - "$work/run-cpu" "$work/run-$device" <<'PY'
import glob, json, sys
def paths(v, p=""):
    if isinstance(v, dict):
        out = {p + "/": "object"}
        for k, x in v.items(): out.update(paths(x, f"{p}/{k}"))
        return out
    if isinstance(v, list):
        out = {p + "[]": "array"}
        for x in v[:1]: out.update(paths(x, p + "[]"))
        return out
    return {p: "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__}
a, b = (json.load(open(sorted(glob.glob(d + "/eval_results_*.json"))[-1])) for d in sys.argv[1:3])
pa, pb = paths(a), paths(b)
diff = sorted(set(pa.items()) ^ set(pb.items()))
print("same schema, %d key paths" % len(pa) if not diff else "differs: " + "; ".join(f"{k} {t}" for k, t in diff[:4]))
PY
)"
  status=PASS; case "$schema" in differs*|"") status=FAIL ;; esac
  add "run --preset 1min $device vs cpu" "$schema" "$status"
else
  add "run --preset 1min $device vs cpu" "a run failed: $(tail -n 1 "$work/run-$device.log" "$work/run-cpu.log" 2>/dev/null | tr '\n' ' ' | head -c 160)" FAIL
fi
fi

# 3. Speed on 16B-shaped layers, random bf16 weights.
bench() { # tokens batch decode → JSON
  "$bin" bench --device "$device" --random-weights --flavor 16B --layers "$layers" --training.seq_len 16384 \
    --batch "$2" --seq-len "$1" --decode-tokens "$3" --iterations 3 --skip-routing --json 2> "$work/bench.err"
}
declare -A prefill flops_per_token
if step bench; then
for tokens in $prefill_sizes; do
  if out="$(bench "$tokens" 1 0)"; then
    read -r rate tflops <<< "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["prefill_tokens_per_s"], r["prefill_gflops_per_s"]/1e3)' "$out")"
    prefill[$tokens]="$rate"
    flops_per_token[$tokens]="$(python3 -c "print($tflops * 1e12 / $rate)")"
    mfu="$(python3 -c "print(f'{100 * $tflops / $peak_tflops:.1f}')")"
    status=INFO; [ "$tokens" = 16384 ] && status="$(python3 -c "print('PASS' if $tflops / $peak_tflops >= 0.35 else 'FAIL')")"
    add "prefill $tokens tokens ($layers layers)" "$(printf '%.0f tok/s, %.1f TFLOP/s, MFU %s%% (≥ 35%% at 16k)' "$rate" "$tflops" "$mfu")" "$status"
  else
    add "prefill $tokens tokens ($layers layers)" "$(head -c 200 "$work/bench.err" | tr '\n' ' ')" FAIL
  fi
done
if out="$(bench 16 1 64)"; then
  read -r rate active <<< "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["decode_tokens_per_s"], r["active_weight_bytes_per_token"])' "$out")"
  roofline="$(python3 -c "print($hbm / $active)")"
  status="$(python3 -c "print('PASS' if $rate >= 0.6 * $roofline else 'FAIL')")"
  add "decode batch 1 ($layers layers)" "$(printf '%.0f tok/s = %.0f%% of the HBM roofline %.0f (≥ 60%%)' "$rate" "$(python3 -c "print(100 * $rate / $roofline)")" "$roofline")" "$status"
else
  add "decode batch 1 ($layers layers)" "$(head -c 200 "$work/bench.err" | tr '\n' ' ')" FAIL
fi
add "decode batch 32" "not measured: moe-eval bench decodes batch 1 only" INFO
fi

# The same shapes in PyTorch eager bf16.
if ! step torch; then
  :
elif python3 -c 'import torch' 2>/dev/null; then
  torch_json="$(python3 "$work/torch_bench.py" --layers "$layers" --prefill $prefill_sizes --decode-batch 1 32 2> "$work/torch.err")"
  for tokens in $prefill_sizes; do
    rate="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r.get("prefill_tokens_per_s", {}).get(sys.argv[2], ""))' "$torch_json" "$tokens" 2>/dev/null)"
    if [ -z "$rate" ]; then add "torch eager prefill $tokens" "$(echo "$torch_json" | head -c 120)$(tail -n 1 "$work/torch.err")" FAIL; continue; fi
    ours="${prefill[$tokens]:-0}"
    ratio="$(python3 -c "print($ours / $rate)")"
    status=INFO; [ "$tokens" = 16384 ] && status="$(python3 -c "print('PASS' if $ratio >= 1.5 else 'FAIL')")"
    extra=""; [ -n "${flops_per_token[$tokens]:-}" ] && extra="$(python3 -c "print(f', {$rate * ${flops_per_token[$tokens]} / 1e12:.1f} TFLOP/s')")"
    add "torch eager prefill $tokens" "$(printf '%.0f tok/s%s; moe-eval/torch %.2f× (≥ 1.5× at 16k)' "$rate" "$extra" "$ratio")" "$status"
  done
  for batch in 1 32; do
    rate="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["decode_tokens_per_s"][sys.argv[2]])' "$torch_json" "$batch" 2>/dev/null)"
    add "torch eager decode batch $batch" "${rate:+$(printf '%.0f tok/s' "$rate")}" INFO
  done
else
  add "torch eager" "PyTorch is not installed on this machine: no ratio" FAIL
fi

echo
printf '%-44s %-46s %s\n' "check" "result" "status"
printf '%s\n' "${table[@]}"
echo
if [ "$failures" -gt 0 ]; then echo "check: $failures failed"; exit 1; fi
echo "check: all passed"
