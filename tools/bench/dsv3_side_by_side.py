#!/usr/bin/env python3
"""TorchTitan eager PyTorch vs moe-eval on the same DeepSeek-V3 checkpoint, tokens and threads.

Builds TorchTitan 0.2.2's own model for a flavor, saves it as a TorchTitan DCP checkpoint
(model-only, the way a training run's last step is saved), draws one token batch, then
alternates timed prefill forwards: PyTorch eager (`torch.inference_mode`, the full [B, T, vocab]
logits) and `moe-eval bench` on the saved checkpoint with the same token file and thread count
(also full logits). Each side's median over all its timed forwards is compared. Dev-only (needs
the developer venv of tools/reference):

    PYTHONPATH=${MOE_EVAL_VENV:-.venv-ref}/tt022 ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/bench/dsv3_side_by_side.py \\
        --moe-eval .build-tasks/release/moe-eval --flavor debugmodel --batch 4 --seq-len 512 --threads 2

Issue 15's target (prefill ≥ 3× TorchTitan eager fp32 on debugmodel shapes, B=8, T=256, 2 threads):

    PYTHONPATH=${MOE_EVAL_VENV:-.venv-ref}/tt022 ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/bench/dsv3_side_by_side.py \\
        --moe-eval .build/release/moe-eval --flavor debugmodel --batch 8 --seq-len 256 --threads 2 --rounds 3

(add --extra "--compute fp32" once `moe-eval bench` has --compute, to pin the fp32 path).

Prints the CPU, one line per round and a summary; --json FILE also writes the numbers.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(REPO_ROOT / "tools" / "reference"))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moe-eval", default=str(REPO_ROOT / ".build" / "release" / "moe-eval"))
    p.add_argument("--flavor", default="debugmodel", help="TorchTitan deepseek_v3 flavor")
    p.add_argument("--layers", type=int, default=None, help="override n_layers (e.g. 16B shapes on 2 layers)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="checkpoint dtype (bf16: weights rounded to bf16 on both sides)")
    p.add_argument("--torch-bf16", action="store_true",
                   help="run PyTorch in bf16 too (default fp32 compute on the same bf16-rounded values: "
                        "faster on CPUs without bf16 FMA units)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (each side runs --repeats per round)")
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per side per round, after one warm-up")
    p.add_argument("--decode-tokens", type=int, default=0, help="also time moe-eval's batch-1 decode (moe-eval only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=None, help="where the checkpoint goes (default: a temp dir, removed)")
    p.add_argument("--extra", default="", help="extra arguments for moe-eval bench (quoted)")
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args(argv)


def build_model(flavor: str, layers, seq_len: int, seed: int):
    import torch
    from torchtitan.models.deepseek_v3 import deepseekv3_args
    from torchtitan.models.deepseek_v3.model.model import DeepSeekV3Model

    import tt_common

    args = deepseekv3_args[flavor]
    args.moe_args.use_grouped_mm = False      # the grouped-mm kernel is CUDA-only
    args.moe_impl = "standard"
    args.attn_type = "sdpa"
    args.attn_mask_type = "causal"
    if layers is not None:
        args.n_layers = layers
        args.n_dense_layers = min(args.n_dense_layers, layers)
    torch.manual_seed(seed)
    model = DeepSeekV3Model(args)
    with torch.no_grad():
        model.init_weights()
        # Decisive routing and visible components, as the agreement fixtures use.
        tt_common.rerandomise_weights(model, torch.Generator().manual_seed(seed + 1), "none")
    model.eval()
    return model, args


def model_args_json(args) -> dict:
    moe = args.moe_args
    return {
        "vocab_size": args.vocab_size, "dim": args.dim, "inter_dim": args.inter_dim,
        "moe_inter_dim": args.moe_inter_dim, "n_layers": args.n_layers, "n_dense_layers": args.n_dense_layers,
        "n_heads": args.n_heads, "norm_eps": args.norm_eps, "q_lora_rank": args.q_lora_rank,
        "kv_lora_rank": args.kv_lora_rank, "qk_nope_head_dim": args.qk_nope_head_dim,
        "qk_rope_head_dim": args.qk_rope_head_dim, "v_head_dim": args.v_head_dim,
        "max_seq_len": args.max_seq_len, "original_seq_len": args.original_seq_len,
        "rope_theta": args.rope_theta, "rope_factor": args.rope_factor, "beta_fast": args.beta_fast,
        "beta_slow": args.beta_slow, "mscale": args.mscale,
        "moe_args": {
            "num_experts": moe.num_experts, "num_shared_experts": moe.num_shared_experts, "top_k": moe.top_k,
            "score_func": moe.score_func, "route_norm": moe.route_norm, "route_scale": moe.route_scale,
            "score_before_experts": moe.score_before_experts, "num_expert_groups": moe.num_expert_groups,
            "num_limited_groups": moe.num_limited_groups, "load_balance_coeff": moe.load_balance_coeff,
        },
    }


def cpu_description() -> str:
    """Model name and the instruction sets that decide the kernels (AVX-512, AVX512_BF16, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{name}; {' '.join(wanted) or 'no AVX2/AVX-512'}"


def time_torch(model, tokens, repeats: int) -> list:
    import torch
    times = []
    with torch.inference_mode():
        model(tokens)      # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            logits = model(tokens)
            float(logits[0, 0, 0])
            times.append(time.perf_counter() - start)
    return times


def time_moe_eval(cmd: list) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"moe-eval failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    a = parse_args(argv)
    import torch
    import tt_common
    import tt_era_a

    tt_common.apply_cpu_patches()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1) if hasattr(torch, "set_num_interop_threads") else None
    model, args = build_model(a.flavor, a.layers, a.seq_len, a.seed)
    work = Path(a.work_dir) if a.work_dir else Path(tempfile.mkdtemp(prefix="moe-eval-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if a.dtype == "bfloat16":
        tt_common.round_weights_to_bf16(model)
    step_dir = tt_era_a.save_model_only(model, work, a.dtype)
    (work / "model_args.json").write_text(json.dumps(model_args_json(args), indent=1))
    generator = torch.Generator().manual_seed(a.seed + 2)
    tokens = torch.randint(0, args.vocab_size, (a.batch, a.seq_len), generator=generator, dtype=torch.int64)
    token_file = work / "tokens.txt"
    token_file.write_text(" ".join(str(t) for t in tokens.flatten().tolist()) + "\n")
    if a.torch_bf16:
        model = model.to(torch.bfloat16)

    cmd = [a.moe_eval, "bench", "--checkpoint", str(step_dir), "--model-args", str(work / "model_args.json"),
           "--batch", str(a.batch), "--seq-len", str(a.seq_len), "--threads", str(a.threads),
           "--tokens-file", str(token_file), "--iterations", str(a.repeats), "--decode-tokens", str(a.decode_tokens),
           "--skip-routing", "--json"] + a.extra.split()
    print(f"cpu: {cpu_description()}", flush=True)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"checkpoint {step_dir}", flush=True)
    print("moe-eval: " + " ".join(cmd), flush=True)
    tokens_total = a.batch * a.seq_len
    torch_times, moe_rates, moe_results = [], [], []
    for r in range(a.rounds):
        t = time_torch(model, tokens, a.repeats)
        torch_times += t
        res = time_moe_eval(cmd)
        moe_results.append(res)
        moe_rates.append(res["prefill_tokens_per_s"])
        print(f"round {r + 1}: torch {tokens_total / statistics.median(t):8.1f} tok/s   "
              f"moe-eval {res['prefill_tokens_per_s']:8.1f} tok/s   (load average {os.getloadavg()[0]:.2f})", flush=True)
    torch_rate = tokens_total / statistics.median(torch_times)
    # moe-eval reports each round's median; the median over rounds is the figure.
    moe_rate = statistics.median(moe_rates)
    summary = {
        "flavor": a.flavor, "layers": args.n_layers, "dtype": a.dtype, "batch": a.batch, "seq_len": a.seq_len,
        "threads": a.threads, "torch_version": torch.__version__,
        "torch_prefill_tokens_per_s": torch_rate, "moe_eval_prefill_tokens_per_s": moe_rate,
        "ratio": moe_rate / torch_rate,
        "moe_eval_prefill_gflops_per_s": statistics.median(x["prefill_gflops_per_s"] for x in moe_results),
        "torch_prefill_gflops_per_s": statistics.median(x["prefill_gflops_per_s"] for x in moe_results) * torch_rate / moe_rate,
        "sgemm_peak_gflops_per_s": statistics.median(x["sgemm_peak_gflops_per_s"] for x in moe_results),
        "moe_eval_prefill_mfu": statistics.median(x["prefill_mfu"] for x in moe_results),
        "load_average_after": os.getloadavg()[0],
        "moe_eval_load_seconds": statistics.median(x["load_seconds"] for x in moe_results),
        "moe_eval_peak_rss_bytes": max(x["peak_rss_bytes"] for x in moe_results),
        "moe_eval_weight_bytes": moe_results[0]["weight_bytes"],
        "moe_eval_rss_after_decode_bytes": max(x["rss_after_decode_bytes"] for x in moe_results),
        "moe_eval_decode_tokens_per_s": statistics.median(x["decode_tokens_per_s"] for x in moe_results),
        "moe_eval_decode_roofline_fraction": statistics.median(x["decode_roofline_fraction"] for x in moe_results),
        "checkpoint_file_bytes": sum(f.stat().st_size for f in Path(step_dir).iterdir()),
    }
    print(f"median prefill: torch {torch_rate:.1f} tok/s, moe-eval {moe_rate:.1f} tok/s, "
          f"ratio {summary['ratio']:.2f}x  (moe-eval {summary['moe_eval_prefill_gflops_per_s']:.1f} GFLOP/s, "
          f"torch {summary['torch_prefill_gflops_per_s']:.1f} GFLOP/s; sgemm peak "
          f"{summary['sgemm_peak_gflops_per_s']:.1f} GFLOP/s, moe-eval MFU {100 * summary['moe_eval_prefill_mfu']:.1f} %)")
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1) + "\n")
    if not a.work_dir:
        import shutil
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
