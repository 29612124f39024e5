#!/usr/bin/env python3
"""Checkpoints of one tiny training run (plus a differently seeded run) for the routing-agreement
tests: a DeepSeek-V3 built with TorchTitan 0.3.0's own model code, trained on character-level
tinyshakespeare, saved with TorchTitan's CheckpointManager at a few steps. Dev-only.

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/make_training_run_fixtures.py

What comes from TorchTitan 0.3.0: the model (config builders, init_states), its MoE router and
expert-bias buffers, `register_moe_load_balancing_hook` (the auxiliary-loss-free bias update,
registered on the optimizer as TorchTitan's trainer does) and `CheckpointManager` (model-only,
export_dtype bfloat16). Not from TorchTitan: the training loop itself (TorchTitan's trainer
needs a device mesh, a tokenizer folder and a dataloader; a 30-line loop does forward,
cross-entropy, backward, clip, torch AdamW step, LambdaLR warmup), and the character-level
tokenization (vocab 64, so the fixture stays small). Attention is TorchTitan's SDPA module
(0.3.0's FlexAttention has no CPU backward); for one unpacked document per row it equals
flex's causal mask.

The driver re-runs this file in a worker whose PYTHONPATH selects torchtitan 0.3.0.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_OUT = REPO_ROOT / "Tests" / "MoEEvalTests" / "Fixtures" / "training_run"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
TORCHTITAN_VERSION = "0.3.0"

SEQ_LEN = 32
BATCH_SIZE = 16
STEPS = 400
SAVE_STEPS = (0, 50, 150, 400)
SEEDS = (0, 1)
AGREEMENT_ROWS = 8
LR = 3e-3
WARMUP = 20
MAX_NORM = 1.0
# 63 characters get their own id; everything else shares id 63.
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ \n.,;:!?'-&3$"[:63]

MODEL_ARGS = {
    "vocab_size": 64,
    "dim": 16,
    "inter_dim": 32,
    "moe_inter_dim": 8,
    "n_layers": 1,
    "n_dense_layers": 0,
    "n_heads": 2,
    "norm_eps": 1e-5,
    "q_lora_rank": 0,
    "kv_lora_rank": 8,
    "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 8,
    "v_head_dim": 8,
    "max_seq_len": SEQ_LEN,
    "original_seq_len": 64,
    "rope_theta": 10000.0,
    "rope_factor": 40,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 1.0,
    "moe_args": {
        "num_experts": 8,
        "num_shared_experts": 1,
        "top_k": 2,
        "score_func": "softmax",
        "route_norm": False,
        "route_scale": 1.0,
        "score_before_experts": False,
        "num_expert_groups": None,
        "num_limited_groups": None,
        "gate_bias": False,
        "load_balance_coeff": 1e-3,
    },
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--torchtitan-030", default=None, help="folder holding torchtitan 0.3.0 (default <venv>/tt030)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(args.torchtitan_030 or Path(sys.prefix) / "tt030")), str(HERE)])
    env["DSV3_FIXTURE_V030_ATTENTION"] = "sdpa"
    env.setdefault("PYTHONHASHSEED", "0")
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *argv], env=env).returncode


def encode(text: str) -> list[int]:
    index = {c: i for i, c in enumerate(ALPHABET)}
    return [index.get(c, 63) for c in text]


class OneProcessDims:
    """What TorchTitan's load-balancing hook asks of ParallelDims in one process without a mesh."""
    ep_enabled = False
    tp = 1

    def get_optional_mesh(self, name):
        return None


def run_worker(args) -> int:
    import torch
    import torch.nn.functional as F

    import tt_common
    tt_common.apply_cpu_patches()
    from importlib import metadata
    if metadata.version("torchtitan") != TORCHTITAN_VERSION:
        raise RuntimeError(f"needs torchtitan {TORCHTITAN_VERSION}")
    import tt_era_b
    tt_era_b.apply_era_patches()
    from torchtitan.components.optimizer.optimizer import register_moe_load_balancing_hook

    started = time.monotonic()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ids = encode(args.data.read_text())
    split = int(len(ids) * 0.95)
    train, heldout = torch.tensor(ids[:split]), ids[split:]
    agreement_tokens = [heldout[r * SEQ_LEN:(r + 1) * SEQ_LEN] for r in range(AGREEMENT_ROWS)]
    variant = {"model_args": MODEL_ARGS}
    report = {"seeds": {}}
    routing_by_checkpoint = {}
    biases = {}

    for seed in SEEDS:
        model = tt_era_b.build_model(variant, init_seed=seed)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
        register_moe_load_balancing_hook(optimizer, [model], OneProcessDims())
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / WARMUP))
        generator = torch.Generator().manual_seed(1000 + seed)
        save_steps = SAVE_STEPS if seed == SEEDS[0] else (STEPS,)
        losses = {}
        for step in range(0, STEPS + 1):
            if step in save_steps:
                name = f"seed{seed}/step-{step}"
                save(tt_era_b, tt_common, model, out / name)
                model.train()
            if step == STEPS:
                break
            starts = torch.randint(0, len(train) - SEQ_LEN - 1, (BATCH_SIZE,), generator=generator)
            batch = torch.stack([train[s:s + SEQ_LEN + 1] for s in starts.tolist()])
            optimizer.zero_grad()
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
            optimizer.step()
            schedule.step()
            if (step + 1) % 50 == 0 or step == 0:
                losses[step + 1] = round(loss.item(), 4)
                print(f"seed {seed} step {step + 1:4d} loss {loss.item():.4f}", flush=True)
        report["seeds"][str(seed)] = {"losses": losses, "checkpoints": [f"seed{seed}/step-{s}" for s in save_steps]}
        for step in save_steps:
            name = f"seed{seed}/step-{step}"
            loaded = tt_era_b.load_checkpoint_into_fresh_model(variant, out / name)
            _, routing, margin = tt_era_b.reference_forward(loaded, torch.tensor(agreement_tokens))
            routing_by_checkpoint[name] = (routing, margin)
            biases[name] = {int(i): layer.moe.expert_bias_E.detach().clone()
                            for i, layer in loaded.layers.items() if layer.moe_enabled}

    final = f"seed{SEEDS[0]}/step-{STEPS}"
    agreement = {}
    for name, (routing, margin) in routing_by_checkpoint.items():
        agreement[name] = {"min_routing_margin": float(margin), "layers": {}}
        for layer, entry in routing.items():
            mine = entry["experts"]
            theirs = routing_by_checkpoint[final][0][layer]["experts"]
            top1 = (first_choice(entry, biases[name][layer])
                    == first_choice(routing_by_checkpoint[final][0][layer], biases[final][layer])).float().mean().item()
            overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(mine, theirs)) / mine.numel()
            agreement[name]["layers"][str(layer)] = {"top1_agreement_with_final": top1,
                                                     "topk_overlap_with_final": overlap}
    tt_common.write_json(out / "model_args.json", tt_common.full_model_args(variant))
    tt_common.write_json(out / "tokens.json", {"tokens": agreement_tokens})
    tt_common.write_json(out / "torchtitan_agreement.json", {
        "reference": final, "torchtitan_version": TORCHTITAN_VERSION, "checkpoints": agreement,
        "training": report})
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {size:,} bytes in {time.monotonic() - started:.0f}s", flush=True)
    print(json.dumps(agreement, indent=1))
    return 0


def first_choice(entry, bias):
    """The selected expert with the highest biased score per token (the router's topk is unsorted)."""
    import torch
    biased = torch.gather(entry["scores"] + bias, 1, entry["experts"])
    best = biased.argmax(dim=1, keepdim=True)
    return torch.gather(entry["experts"], 1, best).squeeze(1)


def save(era, common, model, destination: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="moe_eval_run_") as scratch:
        step_dir = era.save_model_only(model, Path(scratch), "bfloat16")
        common.move_step_dir(step_dir, destination)


if __name__ == "__main__":
    sys.exit(main())
