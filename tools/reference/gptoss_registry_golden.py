#!/usr/bin/env python3
"""Golden for moe-eval's gpt_oss registry configs and FLOP formula
(Tests/MoEModelsTests/Fixtures/gpt_oss/torchtitan030_gptoss_registry.json).

Imports TorchTitan 0.3.0 itself (dev venv, see requirements-tt030.txt), calls each `gpt_oss` config_registry
function, reads the model config it builds (per-layer attention, RoPE, router and expert configs), then builds
the model on the meta device with the RoPE cache at the training seq_len (as `update_from_config` sets it) and
records `get_nparams_and_flops(model, seq_len)`. Nothing is typed in by hand. The committed gpt-oss fixtures'
model args (built as make_family_fixtures.py builds them) get the same record at seq_len 8 and 256.

    PYTHONPATH=$TT030 python tools/reference/gptoss_registry_golden.py > Tests/MoEModelsTests/Fixtures/gpt_oss/torchtitan030_gptoss_registry.json
"""
import dataclasses
import json
import sys
from pathlib import Path

import torch

from torchtitan.models.gpt_oss import config_registry


def model_args(model):
    """moe-eval's gpt_oss `--model-args` field names from a GptOssModel.Config."""
    layers = model.layers
    attention = layers[0].attention
    rope = attention.rope
    moe = layers[0].moe
    experts = moe.routed_experts.inner_experts
    router = moe.router
    windows = [layer.attention.sliding_window_size for layer in layers]
    sizes = {w for w in windows if w is not None}
    if len(sizes) > 1:
        raise SystemExit("several sliding window sizes: moe-eval's args hold one")
    for layer in layers:
        a = layer.attention
        if (a.n_heads, a.n_kv_heads, a.head_dim) != (attention.n_heads, attention.n_kv_heads, attention.head_dim):
            raise SystemExit("attention shapes differ between layers")
    yarn = rope.scaling == "yarn"
    return {
        "family": "gpt_oss",
        "vocab_size": model.vocab_size,
        "dim": model.dim,
        "n_layers": len(layers),
        "n_heads": attention.n_heads,
        "n_kv_heads": attention.n_kv_heads,
        "head_dim": attention.head_dim,
        "moe_inter_dim": experts.hidden_dim,
        "norm_eps": layers[0].attention_norm.eps,
        "qkv_bias": attention.qkv_linear.wqkv.bias if hasattr(attention.qkv_linear, "wqkv") else attention.qkv_linear.wq.bias,
        "wo_bias": attention.wo.bias,
        "attention_sinks": True,
        "sliding_window_size": next(iter(sizes), None),
        "sliding_window_layers": [i for i, w in enumerate(windows) if w is not None],
        "rope_type": "rotate_half",
        "rope_theta": float(rope.theta),
        "rope_scaling": {
            "type": "yarn",
            "rope_factor": float(rope.rope_factor),
            "beta_fast": float(rope.beta_fast),
            "beta_slow": float(rope.beta_slow),
            "original_seq_len": rope.original_seq_len,
            "truncate": rope.truncate,
        } if yarn else None,
        "max_seq_len": rope.max_seq_len,
        "swiglu_alpha": 1.702,  # the default of models/gpt_oss/moe.py's swiglu(), which GptOssGroupedExperts calls
        "swiglu_limit": float(experts.swiglu_limit),
        "enable_weight_tying": bool(getattr(model, "enable_weight_tying", False)),
        "moe_args": {
            "num_experts": moe.num_experts,
            "num_shared_experts": 0 if moe.shared_experts is None else -1,
            "top_k": router.top_k,
            "score_func": router.score_func,
            "route_norm": router.route_norm,
            "route_scale": float(router.route_scale),
            "num_expert_groups": router.num_expert_groups,
            "num_limited_groups": router.num_limited_groups,
            "gate_bias": router.gate.bias,
            "load_balance_coeff": moe.load_balance_coeff,
        },
    }


def nparams_and_flops(model_config, seq_len):
    config = dataclasses.replace(model_config)
    config.layers = [dataclasses.replace(layer) for layer in model_config.layers]
    for layer in config.layers:
        layer.attention = dataclasses.replace(layer.attention, rope=dataclasses.replace(layer.attention.rope, max_seq_len=seq_len))
    with torch.device("meta"):
        model = config.build()
    nparams, flops = config.get_nparams_and_flops(model, seq_len)
    return int(nparams), int(flops)


def main():
    out = {"torchtitan_version": "0.3.0", "configs": {}}
    names = [n for n in dir(config_registry) if n.startswith("gpt_oss_") and callable(getattr(config_registry, n))]
    for name in sorted(names):
        trainer = getattr(config_registry, name)()
        spec = trainer.model_spec
        seq_len = trainer.training.seq_len
        nparams, flops = nparams_and_flops(spec.model, seq_len)
        out["configs"][name] = {
            "module": "gpt_oss",
            "flavor": spec.flavor,
            "seq_len": seq_len,
            "hf_assets_path": trainer.hf_assets_path,
            "dataset": trainer.dataloader.dataset,
            "expert_parallel_degree": trainer.parallelism.expert_parallel_degree,
            "checkpoint_interval": trainer.checkpoint.interval,
            "model_args": model_args(spec.model),
            "nparams": nparams,
            "flops_per_token": flops,
        }
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_family_fixtures import _gptoss_config
    fixtures = Path(__file__).resolve().parents[2] / "Tests/MoEModelsTests/Fixtures/gpt_oss"
    out["fixtures"] = {}
    for args_file in sorted(fixtures.glob("*/model_args.json")):
        config = _gptoss_config(json.loads(args_file.read_text()))
        out["fixtures"][args_file.parent.name] = {
            str(seq_len): dict(zip(("nparams", "flops_per_token"), nparams_and_flops(config, seq_len)))
            for seq_len in (8, 256)
        }
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
