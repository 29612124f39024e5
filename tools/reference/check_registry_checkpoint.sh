#!/usr/bin/env bash
# Dev-only. A real TorchTitan 0.3.0 checkpoint of a registry config (deepseek_v3_debugmodel, qwen3_moe_debug,
# gpt_oss_debugmodel; made by make_registry_checkpoint.py with TorchTitan's own registry, model code and
# CheckpointManager) must give
#   1. byte-identical `moe-eval forward` output with `--module M --config C [--training.seq_len N]` and with
#      the equivalent `--model-args model_args.json`;
#   2. TorchTitan's fp32 logits within 1e-4·max(1, max|logit|) and identical expert sets in every MoE layer;
#   3. equal `moe-eval run --preset 30s --routing-input random --skip-lm-eval` routing_stats and computational
#      cost (timing fields and the EP fields only a config supplies excepted) between the two ways of naming
#      the model, and a complete results file (every top-level block present and non-null).
# Also checks model_args.json against the registry golden (Tests/MoEModelsTests/Fixtures/torchtitan030_registry.json;
# gpt_oss: Fixtures/gpt_oss/torchtitan030_gptoss_registry.json, fields both hold, max_seq_len excepted).
#
# Usage: tools/reference/check_registry_checkpoint.sh [OUT_DIR]     (default: a temporary folder, removed)
# Env:   MODULE (deepseek_v3 | qwen3 | gpt_oss | all; default deepseek_v3), CONFIG (default the module's debug
#        config), MOE_EVAL_VENV (default .venv-ref, see README.md), MOE_EVAL_BIN (default .build/release/moe-eval),
#        SEQ_LEN (deepseek_v3 default 256; qwen3/gpt_oss default: the registry's own seq_len, no override passed),
#        TOKENS (default 32), MIN_MARGIN (least routing margin of the drawn model; default 1e-4, qwen3 1e-5), SEED (default 0), INIT (rerandomised | torchtitan), ATTENTION (flex | sdpa),
#        REUSE=1 (check an OUT_DIR that make_registry_checkpoint.py already wrote instead of writing it again)
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/../.."
module="${MODULE:-deepseek_v3}"
if [ "$module" = all ]; then
  for m in deepseek_v3 qwen3 gpt_oss; do
    MODULE="$m" CONFIG= "$script" ${1:+"$1/$m"} || exit 1
  done
  exit 0
fi
case "$module" in
  deepseek_v3) config="${CONFIG:-deepseek_v3_debugmodel}"; seq_len="${SEQ_LEN:-256}";;
  qwen3) config="${CONFIG:-qwen3_moe_debug}"; seq_len="${SEQ_LEN:-}"; MIN_MARGIN="${MIN_MARGIN:-1e-5}";;
  gpt_oss) config="${CONFIG:-gpt_oss_debugmodel}"; seq_len="${SEQ_LEN:-}";;
  *) echo "FAIL: MODULE must be deepseek_v3, qwen3, gpt_oss or all, not '$module'"; exit 1;;
esac
venv="${MOE_EVAL_VENV:-.venv-ref}"
bin="${MOE_EVAL_BIN:-.build/release/moe-eval}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
out="${1:-$tmp/ckpt}"
[ -x "$bin" ] || { echo "FAIL: no moe-eval binary at $bin (set MOE_EVAL_BIN)"; exit 1; }
[ -x "$venv/bin/python" ] || { echo "FAIL: no reference venv at $venv (set MOE_EVAL_VENV)"; exit 1; }

if [ "${REUSE:-0}" = 1 ] && [ -f "$out/info.json" ]; then
  echo "== reusing the registry checkpoint in $out"
else
echo "== TorchTitan 0.3.0: registry checkpoint $module $config (seq_len ${seq_len:-registry}) → $out"
"$venv/bin/python" tools/reference/make_registry_checkpoint.py --out "$out" --module "$module" --config "$config" \
  ${seq_len:+--seq-len "$seq_len"} --tokens "${TOKENS:-32}" ${MIN_MARGIN:+--min-margin "$MIN_MARGIN"} \
  --seed "${SEED:-0}" --init "${INIT:-rerandomised}" --attention "${ATTENTION:-flex}" \
  2> >(grep -v "initial_load_model_only=True has no effect" >&2)
fi

registry=(--module "$module" --config "$config" ${seq_len:+--training.seq_len "$seq_len"})
margs=(--model-args "$out/model_args.json")
echo "== moe-eval forward"
"$bin" forward --checkpoint "$out/checkpoint/step-0" "${registry[@]}" --tokens-file "$out/tokens.json" --output "$tmp/a.json"
"$bin" forward --checkpoint "$out/checkpoint/step-0" "${margs[@]}" --tokens-file "$out/tokens.json" --output "$tmp/b.json"
echo "== moe-eval run --preset 30s --routing-input random --skip-lm-eval"
"$bin" run --quiet --checkpoint "$out/checkpoint" "${registry[@]}" --preset 30s --routing-input random --skip-lm-eval --output-dir "$tmp/run-a"
"$bin" run --quiet --checkpoint "$out/checkpoint" "${margs[@]}" --preset 30s --routing-input random --skip-lm-eval --output-dir "$tmp/run-b"

"$venv/bin/python" - "$out" "$tmp" <<'PY'
import glob, json, sys
import numpy as np

out, tmp = sys.argv[1], sys.argv[2]
failures = []

def check(ok, message):
    print(("ok   " if ok else "FAIL ") + message)
    if not ok:
        failures.append(message)

info = json.load(open(f"{out}/info.json"))
args = json.load(open(f"{out}/model_args.json"))
size = sum(p.stat().st_size for p in __import__("pathlib").Path(f"{out}/checkpoint").rglob("*") if p.is_file())
print(f"checkpoint: torchtitan {info['torchtitan_version']} (torch {info['torch_version']}), {info['config']} "
      f"seq_len {info['training_seq_len']}, {info['parameters']:,} parameters, {size / 2**20:.1f} MiB "
      f"{info['checkpoint_files']}, init {info['init']}, attention {info['attention']}, "
      f"min routing margin {info['min_routing_margin']:.3g}, TorchTitan reload identical {info['reload_identical']}")

# model_args.json (from the instantiated TorchTitan model) vs the registry golden, max_seq_len = seq_len.
seq_len = info["training_seq_len"]
golden_file = ("Tests/MoEModelsTests/Fixtures/gpt_oss/torchtitan030_gptoss_registry.json" if info["module"] == "gpt_oss"
               else "Tests/MoEModelsTests/Fixtures/torchtitan030_registry.json")
golden = json.load(open(golden_file))["configs"][info["config"]]["model_args"]
if info["module"] == "deepseek_v3":
    want = dict(golden, max_seq_len=seq_len)
    check(args == want, f"model_args.json equals the registry golden with max_seq_len {seq_len}"
          + ("" if args == want else f": {sorted(k for k in want if want[k] != args.get(k))}"))
else:
    def differing(a, b, prefix=""):
        keys = sorted(set(a) & set(b) - {"max_seq_len"})
        found = []
        for k in keys:
            if isinstance(a[k], dict) and isinstance(b[k], dict):
                found += differing(a[k], b[k], f"{prefix}{k}.")
            elif a[k] != b[k]:
                found.append(prefix + k)
        return found
    bad = differing(args, golden)
    check(not bad, f"model_args.json equals the registry golden in the fields both hold, max_seq_len excepted "
          f"(instantiated {args['max_seq_len']}, registry {golden['max_seq_len']})" + (f": {bad}" if bad else ""))

# 1. --module/--config vs --model-args: byte-identical output.
a_bytes, b_bytes = open(f"{tmp}/a.json", "rb").read(), open(f"{tmp}/b.json", "rb").read()
check(a_bytes == b_bytes, f"forward --config vs --model-args byte-identical ({len(a_bytes)} bytes)")

# 2. vs TorchTitan's own fp32 forward.
ours, ref = json.loads(a_bytes), json.load(open(f"{out}/expected.json"))
x, y = np.asarray(ours["logits"], np.float64), np.asarray(ref["logits"], np.float64)
check(x.shape == y.shape, f"logits shape {x.shape} vs TorchTitan {y.shape}")
delta = float(np.abs(x - y).max()); top = float(np.abs(y).max()); rel = delta / max(1.0, top)
check(rel <= 1e-4, f"logits vs TorchTitan: max|Δ| {delta:.3g}, max|logit| {top:.3g}, relative {rel:.3g} (≤ 1e-4)")
check(sorted(ours["routing"]) == sorted(ref["routing"]), f"MoE layers {sorted(ref['routing'], key=int)}")
rows = differing = 0; wdelta = 0.0
for layer, entry in ref["routing"].items():
    mine = ours["routing"].get(layer, {"experts": [], "weights": []})
    for e1, w1, e2, w2 in zip(mine["experts"], mine["weights"], entry["experts"], entry["weights"]):
        rows += 1
        if set(e1) != set(e2):
            differing += 1
        else:
            wdelta = max(wdelta, max(abs(dict(zip(e1, w1))[e] - dict(zip(e2, w2))[e]) for e in e2))
    rows += abs(len(mine["experts"]) - len(entry["experts"]))
check(differing == 0 and rows == sum(len(e["experts"]) for e in ref["routing"].values()),
      f"expert sets vs TorchTitan: {rows - differing}/{rows} identical, max |Δweight| {wdelta:.3g}")

# 3. run: routing_stats and computational cost.
ra = json.load(open(glob.glob(f"{tmp}/run-a/eval_results_*.json")[0]))
rb = json.load(open(glob.glob(f"{tmp}/run-b/eval_results_*.json")[0]))
CONFIG_ONLY = {"ep_degree", "ep_overload_factor", "step_overload_factor"}  # need the config's expert_parallel_degree
TIMING = {"achieved_gflops_per_sec", "cpu_sgemm_peak_gflops_per_sec", "measured_forward_seconds", "mfu"}

def strip(obj, drop):
    if isinstance(obj, dict):
        return {k: strip(v, drop) for k, v in obj.items() if k not in drop}
    if isinstance(obj, list):
        return [strip(v, drop) for v in obj]
    return obj

def config_only(obj):
    if isinstance(obj, dict):
        found = {k: v for k, v in obj.items() if k in CONFIG_ONLY}
        for k, v in obj.items():
            if k not in CONFIG_ONLY:
                sub = config_only(v)
                if sub:
                    found[k] = sub
        return found
    return {}

rs_a, rs_b = strip(ra["routing_stats"], CONFIG_ONLY), strip(rb["routing_stats"], CONFIG_ONLY)
check(rs_a == rs_b, f"run routing_stats equal ({len(rs_a)} blocks, EP fields excepted)")
extra_a, extra_b = config_only(ra["routing_stats"]), config_only(rb["routing_stats"])
ep_values = {json.dumps(v, sort_keys=True) for layer in extra_a.values() for k, v in layer.items() if k == "ep_degree"}
check(not extra_b and ep_values == {"1"},
      f"EP fields only with --config (expert_parallel_degree 1): step_overload_factor "
      f"{extra_a.get('aggregate', {}).get('step_overload_factor')}, --model-args has {sorted(extra_b) or 'none'}")
cc_a, cc_b = strip(ra["computational_cost"], TIMING), strip(rb["computational_cost"], TIMING)
check(cc_a == cc_b, f"run computational_cost equal (timing excepted): forward_flops_per_token "
      f"{cc_a.get('forward_flops_per_token')}, num_flops_per_token {cc_a.get('num_flops_per_token')}, "
      f"total_params_billions {cc_a.get('total_params_billions')}")
check(ra["model_args"] == rb["model_args"], "run model_args blocks equal")
check(ra["routing_stats"]["aggregate"].get("avg_expert_utilization_rate") is not None, "routing_stats has an aggregate")
SKIPPED = {"lm_eval_results"}  # empty by request (--skip-lm-eval)
empty = sorted(k for k, v in ra.items() if k not in SKIPPED and (v is None or v == {} or v == []))
check(not empty, f"results file complete: {len(ra)} blocks, none empty but {sorted(SKIPPED)} (--skip-lm-eval)"
      + (f"; also empty: {empty}" if empty else ""))

# TorchTitan's own get_nparams_and_flops at the registry seq_len (goldens from the released code).
flops_golden = None
if info["module"] == "gpt_oss":
    entry = json.load(open("Tests/MoEModelsTests/Fixtures/gpt_oss/torchtitan030_gptoss_registry.json"))["configs"][info["config"]]
    flops_golden = (entry["seq_len"], entry["nparams"], entry["flops_per_token"])
elif info["module"] == "qwen3":
    entry = json.load(open("Tests/MoEModelsTests/Fixtures/qwen3/torchtitan030_flops.json")).get(info["flavor"])
    if entry:
        flops_golden = (entry["seq_len"], entry["nparams"], entry["num_flops_per_token"])
if flops_golden and flops_golden[0] == seq_len:
    check(cc_a.get("num_flops_per_token") == flops_golden[2] and info["parameters"] == flops_golden[1],
          f"num_flops_per_token {cc_a.get('num_flops_per_token')} and TorchTitan parameters {info['parameters']:,} "
          f"equal TorchTitan's get_nparams_and_flops golden ({flops_golden[2]}, {flops_golden[1]:,}) at seq_len {seq_len}")

print("PASS" if not failures else f"FAIL ({len(failures)} checks)")
sys.exit(1 if failures else 0)
PY
