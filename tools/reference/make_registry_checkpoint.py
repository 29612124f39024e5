#!/usr/bin/env python3
"""A real TorchTitan 0.3.0 checkpoint of a *registry* config, for checking `moe-eval --module/--config`.

Dev-only (see README.md for the venv). Unlike make_dsv3_fixtures.py / make_family_fixtures.py, which rebuild
small models from hand-chosen arguments, this takes the model from TorchTitan 0.3.0's own config registry
(--module deepseek_v3 | qwen3 | gpt_oss, --config defaulting to deepseek_v3_debugmodel | qwen3_moe_debug |
gpt_oss_debugmodel):

    config = torchtitan.models.<module>.config_registry.<config>()
    config.training.seq_len = N                      # as `--training.seq_len N` does
    config.model_spec.model.update_from_config(config=config)   # what Trainer.__init__ does
    model = config.model_spec.model.build()          # CPU, fp32

then TorchTitan's `init_states()` under `torch.no_grad()`, the team's re-randomisation
(tt_common.rerandomise_weights, or make_family_fixtures.rerandomise for qwen3/gpt_oss: decisive router,
non-zero expert_bias; `--init torchtitan` keeps TorchTitan's init and only draws a non-zero expert_bias), a
model-only fp32 save through TorchTitan's own CheckpointManager at step 0, and TorchTitan's fp32 forward
(flex attention; the experts' grouped GEMMs replaced by fp32 per-expert matmuls, as the fixtures do) on
2 random token rows. gpt_oss_debugmodel names CUDA-only varlen attention; its model is rebuilt with the
registry's own `model_registry(flavor, attn_backend="flex")` after checking that both have the same
parameters (the attention backend holds no weights).

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/make_registry_checkpoint.py --out OUT \
        [--module qwen3] [--config qwen3_moe_debug] [--seq-len N]

Writes:
    OUT/checkpoint/step-0/   .metadata + __0_0.distcp (written as <dump>/checkpoint/step-0 by CheckpointManager)
    OUT/model_args.json      the instantiated model's arguments (fixture schema, max_seq_len = seq_len)
    OUT/tokens.json          {"tokens": [[N ids], [N ids]]}
    OUT/expected.json        {"logits", "routing": {"<layer>": {experts, weights, scores}}}
    OUT/info.json            config name, seq_len, seed, numerics read from the module, routing margin,
                             parameter count, the checkpoint reload check
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIGS = {"deepseek_v3": "deepseek_v3_debugmodel", "qwen3": "qwen3_moe_debug", "gpt_oss": "gpt_oss_debugmodel"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced)")
    parser.add_argument("--module", choices=sorted(DEFAULT_CONFIGS), default="deepseek_v3",
                        help="TorchTitan model module (default deepseek_v3)")
    parser.add_argument("--config", default=None, help="config_registry function (default: the module's debug model)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="training.seq_len override (default: the registry's own seq_len)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per row (default 32; 2 rows)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--min-margin", type=float, default=None,
                        help="least top-k selection margin a draw must reach (default tt_common.MIN_ROUTING_MARGIN); "
                             "qwen3_moe_debug's 8 layers x 64 experts rarely leave 1e-4 between 8th and 9th score")
    parser.add_argument("--init", choices=["rerandomised", "torchtitan"], default="rerandomised",
                        help="rerandomised (default, as the fixtures) or TorchTitan's own init + random expert_bias")
    parser.add_argument("--attention", choices=["flex", "sdpa"], default="flex",
                        help="flex (the registry's backend, default) or TorchTitan's SDPA module as a fallback")
    parser.add_argument("--torchtitan-030", default=None, help="folder holding torchtitan 0.3.0 (default <venv>/tt030)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    tt_dir = Path(args.torchtitan_030 or Path(sys.prefix) / "tt030")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tt_dir), str(HERE)])
    env.setdefault("PYTHONHASHSEED", "0")
    argv = list(argv if argv is not None else sys.argv[1:])
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *argv], env=env).returncode


# --------------------------------------------------------------------------- worker

def parameter_shapes(model_config) -> dict:
    import torch
    with torch.device("meta"):
        model = model_config.build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def registry_model_config(module: str, config_name: str, seq_len, attention: str):
    import importlib

    from torchtitan.models.common.attention import FlexAttention, ScaledDotProductAttention

    config_registry = importlib.import_module(f"torchtitan.models.{module}.config_registry")
    config = getattr(config_registry, config_name)()
    if seq_len is not None:
        config.training.seq_len = seq_len
    if module == "gpt_oss" and not isinstance(config.model_spec.model.layers[0].attention.inner_attention,
                                              FlexAttention.Config):
        flex_spec = importlib.import_module("torchtitan.models.gpt_oss").model_registry(
            config.model_spec.flavor, attn_backend="flex")
        if parameter_shapes(flex_spec.model) != parameter_shapes(config.model_spec.model):
            raise RuntimeError("the flex build of the flavor has other parameters than the registry's")
        config.model_spec = flex_spec
    model_config = config.model_spec.model
    model_config.update_from_config(config=config)  # as Trainer.__init__: RoPE max_seq_len = training.seq_len
    for layer in model_config.layers:
        if attention == "sdpa" and module != "deepseek_v3":
            raise RuntimeError("--attention sdpa is for deepseek_v3 only (gpt-oss's sinks need flex)")
        if attention == "sdpa":
            layer.attention.inner_attention = ScaledDotProductAttention.Config()
        elif not isinstance(layer.attention.inner_attention, FlexAttention.Config):
            raise RuntimeError("expected the registry's flex attention")
    return config, model_config


def qwen3_model_args(model_config, model) -> dict:
    """model_args.json in the qwen3 fixtures' schema (family_variants.py), read from the instantiated config."""
    import torch
    layers = model_config.layers
    attention = layers[0].attention
    rope = attention.rope
    if any(l.moe is None for l in layers):
        raise RuntimeError("expected every layer MoE")
    for l in layers[1:]:
        if (l.attention.rope, l.attention.n_heads, l.attention.n_kv_heads, l.attention.head_dim) != (
                rope, attention.n_heads, attention.n_kv_heads, attention.head_dim):
            raise RuntimeError("layers differ in attention arguments")
    if rope.scaling not in (None, "none"):
        raise RuntimeError(f"unexpected RoPE scaling {rope.scaling}")
    moe = layers[0].moe
    router = moe.router
    norm_eps = {float(m.eps) for m in model.modules() if isinstance(m, torch.nn.RMSNorm)}
    if len(norm_eps) != 1:
        raise RuntimeError(f"RMSNorms use several eps: {norm_eps}")
    return {
        "family": "qwen3",
        "vocab_size": model_config.vocab_size,
        "dim": model_config.dim,
        "n_layers": len(layers),
        "n_heads": attention.n_heads,
        "n_kv_heads": attention.n_kv_heads,
        "head_dim": attention.head_dim,
        "moe_inter_dim": moe.routed_experts.inner_experts.hidden_dim,
        "norm_eps": norm_eps.pop(),
        "qk_norm": attention.qk_norm is not None,
        "rope_type": "rotate_half",
        "rope_theta": float(rope.theta),
        "rope_scaling": None,
        "max_seq_len": rope.max_seq_len,
        "enable_weight_tying": bool(getattr(model_config, "enable_weight_tying", False)),
        "moe_args": {
            "num_experts": moe.num_experts,
            "num_shared_experts": 0 if moe.shared_experts is None else -1,
            "top_k": router.top_k,
            "score_func": router.score_func,
            "route_norm": router.route_norm,
            "route_scale": float(router.route_scale),
            "num_expert_groups": router.num_expert_groups,
            "num_limited_groups": router.num_limited_groups,
            "gate_bias": bool(router.gate.bias),
            "load_balance_coeff": moe.load_balance_coeff,
        },
    }


def model_args_of(module: str, model_config, model) -> dict:
    if module == "qwen3":
        return qwen3_model_args(model_config, model)
    if module == "gpt_oss":
        from gptoss_registry_golden import model_args
        return model_args(model_config)
    return deepseek_model_args(model_config, model)


def deepseek_model_args(model_config, model) -> dict:
    """model_args.json (fixture schema) read from the instantiated config and modules."""
    layers = model_config.layers
    attention = layers[0].attention
    rope = attention.rope
    dense = [l for l in layers if l.moe is None]
    moe_layers = [l for l in layers if l.moe is not None]
    if dense != layers[:len(dense)]:
        raise RuntimeError("dense layers are not the first layers")
    for l in layers[1:]:
        if l.attention.rope != rope or l.attention.n_heads != attention.n_heads or l.attention.mscale != attention.mscale:
            raise RuntimeError("layers differ in attention arguments")
    moe = moe_layers[0].moe
    router = moe.router
    moe_inter_dim = moe.routed_experts.inner_experts.hidden_dim
    shared = moe.shared_experts
    shared_hidden = 0 if shared is None else shared.w1.out_features
    if shared_hidden % moe_inter_dim:
        raise RuntimeError("shared expert width is not a multiple of moe_inter_dim")
    norm_eps = {float(m.eps) for m in model.modules() if isinstance(m, __import__("torch").nn.RMSNorm)}
    if len(norm_eps) != 1:
        raise RuntimeError(f"RMSNorms use several eps: {norm_eps}")
    yarn = rope.scaling == "yarn"
    return {
        "vocab_size": model_config.vocab_size,
        "dim": model_config.dim,
        "inter_dim": dense[0].feed_forward.w1.out_features if dense else 0,
        "moe_inter_dim": moe_inter_dim,
        "n_layers": len(layers),
        "n_dense_layers": len(dense),
        "n_heads": attention.n_heads,
        "norm_eps": norm_eps.pop(),
        "q_lora_rank": attention.q_lora_rank,
        "kv_lora_rank": attention.kv_lora_rank,
        "qk_nope_head_dim": attention.qk_nope_head_dim,
        "qk_rope_head_dim": attention.qk_rope_head_dim,
        "v_head_dim": attention.v_head_dim,
        "max_seq_len": rope.max_seq_len,
        "original_seq_len": rope.original_seq_len,
        "rope_theta": float(rope.theta),
        "rope_factor": float(rope.rope_factor) if yarn else 1.0,
        "beta_fast": float(rope.beta_fast),
        "beta_slow": float(rope.beta_slow),
        "mscale": float(attention.mscale),
        "moe_args": {
            "num_experts": moe.num_experts,
            "num_shared_experts": shared_hidden // moe_inter_dim,
            "top_k": router.top_k,
            "score_func": router.score_func,
            "route_norm": router.route_norm,
            "route_scale": float(router.route_scale),
            "score_before_experts": False,  # 0.3.0's MoE always scales the experts' outputs
            "num_expert_groups": router.num_expert_groups,
            "num_limited_groups": router.num_limited_groups,
            "gate_bias": bool(router.gate.bias),
            "load_balance_coeff": moe.load_balance_coeff,
        },
    }


def save_model_only(model, work_dir: Path, step: int, interval: int) -> Path:
    """TorchTitan's own CheckpointManager, model-only last-step save in fp32 (as tt_era_b.save_model_only,
    with the registry's checkpoint interval and the step given)."""
    from torchtitan.components.checkpointer.dcp import CheckpointManager

    config = CheckpointManager.Config(
        enable=True, folder="checkpoint", interval=interval, last_save_model_only=True,
        export_dtype="float32", keep_latest_k=0, async_mode="disabled",
    )
    previous = os.getcwd()
    os.chdir(work_dir)
    try:
        manager = CheckpointManager(
            config, dataloader=None, model_parts=[model], optimizers=None, lr_schedulers=None,
            states={}, sd_adapter=None, base_folder="./outputs",
        )
        if not manager.save(curr_step=step, last_step=True):
            raise RuntimeError("CheckpointManager did not save")
        manager.close()
    finally:
        os.chdir(previous)
    return work_dir / "outputs" / "checkpoint" / f"step-{step}"


def run_worker(args) -> int:
    import json
    from importlib import metadata

    import torch

    import tt_common
    import tt_era_b as era

    version = metadata.version("torchtitan")
    if version != "0.3.0":
        raise RuntimeError(f"needs torchtitan 0.3.0, PYTHONPATH gives {version}")
    module = args.module
    config_name = args.config or DEFAULT_CONFIGS[module]
    if module == "deepseek_v3":
        era.apply_era_patches()
        tt_common.apply_cpu_patches()
        era.ATTENTION_BACKEND = args.attention  # reference_forward: flex masks or plain is_causal SDPA
        forward, rerandomise = era.reference_forward, tt_common.rerandomise_weights
    else:
        import make_family_fixtures as family
        family.apply_patches(module)
        forward, rerandomise = family.reference_forward, family.rerandomise
    name = f"registry:{config_name}:{args.seq_len}:{args.init}"
    min_margin = tt_common.MIN_ROUTING_MARGIN if args.min_margin is None else args.min_margin

    for draw in range(tt_common.MAX_DRAWS):
        config, model_config = registry_model_config(module, config_name, args.seq_len, args.attention)
        torch.manual_seed(tt_common.derived_seed(args.seed, name, draw, "init"))
        model = model_config.build()  # CPU, default dtype fp32
        with torch.no_grad():
            model.init_states()
        weights = torch.Generator().manual_seed(tt_common.derived_seed(args.seed, name, draw, "weights"))
        if args.init == "rerandomised":
            rerandomise(model, weights, "random")
        else:
            with torch.no_grad():
                for key, tensor in model.state_dict(keep_vars=True).items():
                    if key.endswith("expert_bias_E"):
                        tensor.copy_(0.01 * torch.randn(tensor.shape, generator=weights))
        biases = [v for k, v in model.state_dict().items() if k.endswith("expert_bias_E")]
        if not biases or any(torch.count_nonzero(b) == 0 for b in biases):
            raise RuntimeError("expected a non-zero expert_bias_E in every MoE layer")
        tokens = tt_common.draw_tokens(
            torch.Generator().manual_seed(tt_common.derived_seed(args.seed, name, draw, "tokens")),
            model_config.vocab_size, args.tokens)
        logits, routing, margin = forward(model, tokens)
        print(f"  draw {draw}: min routing margin {margin:.3g}, max |logit| {logits.abs().max().item():.3g}",
              flush=True)
        if margin >= min_margin:
            break
    else:
        raise RuntimeError(f"no draw reached a routing margin of {min_margin}")

    model_args = model_args_of(module, model_config, model)  # before the save: a refused config fails fast
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    work_dir = out / ".work"
    work_dir.mkdir(parents=True)
    step_dir = save_model_only(model, work_dir, step=0, interval=config.checkpoint.interval)
    tt_common.move_step_dir(step_dir, out / "checkpoint" / "step-0")
    shutil.rmtree(work_dir)
    files = tt_common.checkpoint_tensor_files(out / "checkpoint" / "step-0")
    if files != ["__0_0.distcp"]:
        raise RuntimeError(f"checkpoint holds {files}")

    # Reload into a fresh registry model (NaN-filled) and recompute: the checkpoint is the model.
    import torch.distributed.checkpoint as dcp
    _, fresh_config = registry_model_config(module, config_name, args.seq_len, args.attention)
    fresh = fresh_config.build()
    with torch.no_grad():
        fresh.init_states()
        for tensor in fresh.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    state = fresh.state_dict()
    dcp.load(state, checkpoint_id=str(out / "checkpoint" / "step-0"))
    fresh.load_state_dict(state)
    reloaded_logits, reloaded_routing, _ = forward(fresh, tokens)
    reload_identical = bool(torch.equal(reloaded_logits, logits)) and all(
        torch.equal(reloaded_routing[i]["experts"], routing[i]["experts"]) for i in routing)
    if not reload_identical:
        raise RuntimeError("reloaded checkpoint gives other logits/routing")

    numerics = era.module_numerics(model) if module == "deepseek_v3" else family.module_numerics(model, module)
    n_params = sum(p.numel() for p in model.parameters())
    tt_common.write_json(out / "model_args.json", model_args)
    tt_common.write_json(out / "tokens.json", {"tokens": tokens.tolist()}, compact=True)
    tt_common.write_json(out / "expected.json", tt_common.expected_payload(logits, routing), compact=True)
    tt_common.write_json(out / "info.json", {
        "torchtitan_version": version,
        "torch_version": torch.__version__,
        "module": module,
        "config": config_name,
        "flavor": config.model_spec.flavor,
        "training_seq_len": config.training.seq_len,
        "seed": args.seed,
        "draw": draw,
        "init": args.init,
        "attention": args.attention,
        "storage_dtype": "float32",
        "save_step": 0,
        "parameters": n_params,
        "softmax_scale": numerics["softmax_scale"],
        "final_norm_eps": numerics["final_norm_eps"],
        "yarn_active": numerics["yarn_active"],
        "numerics": numerics,
        "tokens_per_row": args.tokens,
        "min_routing_margin": float(margin),
        "required_routing_margin": min_margin,
        "reload_identical": reload_identical,
        "checkpoint_files": sorted(p.name for p in (out / "checkpoint" / "step-0").iterdir()),
    })
    print(f"  wrote {out}: {n_params:,} parameters, seq_len {config.training.seq_len}, margin {margin:.3g}, "
          f"reload identical {reload_identical}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
