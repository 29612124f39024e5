"""The DeepSeek-V3 fixture variants, described in TorchTitan Era-A (v0.2.x) field names.

Pure data: imported both by the driver (any Python) and by the workers (which
import torchtitan). Each entry's ``model_args`` is written verbatim to
``model_args.json``; the 0.3.0 worker translates the same fields into 0.3.0's
config builders.
"""

import copy

# Sizes are kept tiny: everything under Tests/MoEModelsTests/Fixtures/dsv3 must
# stay within the 4 MB budget, logits JSON included.
_BASE_ARGS = {
    "vocab_size": 160,
    "dim": 32,
    "inter_dim": 48,
    "moe_inter_dim": 12,
    "n_layers": 3,
    "n_dense_layers": 1,
    "n_heads": 2,
    "norm_eps": 1e-5,
    "q_lora_rank": 0,
    "kv_lora_rank": 16,
    "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8,
    "v_head_dim": 16,
    "max_seq_len": 64,
    "original_seq_len": 128,
    "rope_theta": 10000.0,
    "rope_factor": 40,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 1.0,
    "moe_args": {
        "num_experts": 8,
        "num_shared_experts": 2,
        "top_k": 3,
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


def _args(overrides: dict, moe_overrides: dict) -> dict:
    args = copy.deepcopy(_BASE_ARGS)
    args.update(overrides)
    args["moe_args"].update(moe_overrides)
    return args


VARIANTS = [
    {
        "name": "v022_softmax_basic",
        "torchtitan_version": "0.2.2",
        "storage_dtype": "float32",
        "num_processes": 1,
        "full_training_checkpoint": False,
        "expert_bias": "zero",
        "hf_copy": True,
        "seq_len": 12,
        "model_args": _args(
            {"max_seq_len": 64, "original_seq_len": 128, "mscale": 0.7},
            {"score_func": "softmax", "top_k": 3, "num_shared_experts": 2},
        ),
        "description": "torchtitan 0.2.2 model-only fp32 checkpoint: softmax router, route_norm off, "
        "route_scale 1, q_lora_rank 0, YaRN off (max_seq_len <= original_seq_len), 1 dense layer, "
        "2 shared experts, expert_bias all zero. hf/ holds the same weights converted with "
        "DeepSeekV3StateDictAdapter.to_hf in 2 safetensors shards.",
    },
    {
        "name": "v022_sigmoid_groups_yarn",
        "torchtitan_version": "0.2.2",
        "storage_dtype": "float32",
        "num_processes": 1,
        "full_training_checkpoint": False,
        "expert_bias": "random",
        "seq_len": 12,
        "model_args": _args(
            {
                "n_layers": 4,
                "n_dense_layers": 2,
                "q_lora_rank": 24,
                "max_seq_len": 256,
                "original_seq_len": 64,
                "mscale": 1.0,
            },
            {
                "score_func": "sigmoid",
                "route_norm": True,
                "route_scale": 2.5,
                "top_k": 2,
                "num_shared_experts": 1,
                "num_expert_groups": 4,
                "num_limited_groups": 2,
            },
        ),
        "description": "torchtitan 0.2.2 model-only fp32 checkpoint, 671B-style routing: sigmoid, route_norm, "
        "route_scale 2.5, 4 expert groups / 2 limited, q_lora_rank 24, YaRN on (max_seq_len 256 > "
        "original_seq_len 64, mscale 1.0), 2 dense layers, 1 shared expert, random non-zero expert_bias.",
    },
    {
        "name": "v022_no_shared_score_before",
        "torchtitan_version": "0.2.2",
        "storage_dtype": "float32",
        "num_processes": 1,
        "full_training_checkpoint": False,
        "expert_bias": "random",
        "seq_len": 12,
        "model_args": _args(
            {"kv_lora_rank": 24, "rope_theta": 50000.0, "max_seq_len": 32, "original_seq_len": 4096},
            {
                "score_func": "softmax",
                "route_norm": True,
                "route_scale": 1.5,
                "top_k": 2,
                "num_shared_experts": 0,
                "score_before_experts": True,
            },
        ),
        "description": "torchtitan 0.2.2 model-only fp32 checkpoint: no shared experts, softmax, route_norm, "
        "route_scale 1.5, score_before_experts true (routing weight multiplies the expert input), "
        "random non-zero expert_bias, rope_theta 50000, YaRN off.",
    },
    {
        "name": "v022_bf16_export",
        "torchtitan_version": "0.2.2",
        "storage_dtype": "bfloat16",
        "num_processes": 1,
        "full_training_checkpoint": False,
        "expert_bias": "random",
        "seq_len": 12,
        "model_args": _args(
            {"max_seq_len": 128, "original_seq_len": 32, "mscale": 0.7, "rope_factor": 16},
            {
                "score_func": "softmax",
                "route_scale": 1.25,
                "top_k": 3,
                "num_shared_experts": 1,
            },
        ),
        "description": "torchtitan 0.2.2 last-step model-only export with export_dtype=bfloat16 (every tensor, "
        "expert_bias included, stored as bf16): softmax, route_scale 1.25, 1 shared expert, random "
        "non-zero expert_bias, YaRN on (max_seq_len 128 > original_seq_len 32, rope_factor 16, mscale 0.7). "
        "Reference logits are fp32 compute on the bf16-rounded weights.",
    },
    {
        "name": "v022_two_process_fsdp",
        "torchtitan_version": "0.2.2",
        "storage_dtype": "float32",
        "num_processes": 2,
        "full_training_checkpoint": False,
        "expert_bias": "random",
        "seq_len": 12,
        "model_args": _args(
            {"vocab_size": 161, "n_heads": 3},
            {"score_func": "softmax", "top_k": 2, "num_shared_experts": 1},
        ),
        "description": "torchtitan 0.2.2 model-only fp32 checkpoint saved by 2 gloo processes after torchtitan's "
        "apply_fsdp (FSDP2 fully_shard, Shard(0) DTensors) on a 2-rank CPU mesh: every parameter is split "
        "across __0_0.distcp and __1_0.distcp; vocab 161 makes tok_embeddings/output split unevenly "
        "(81 + 80 rows); expert_bias buffers are replicated and stored once. Softmax, top_k 2, "
        "1 shared expert, 3 heads, random non-zero expert_bias.",
    },
    {
        "name": "v022_full_training",
        "torchtitan_version": "0.2.2",
        "storage_dtype": "float32",
        "num_processes": 1,
        "full_training_checkpoint": True,
        "expert_bias": "random",
        "seq_len": 12,
        "model_args": _args(
            {"n_layers": 2},
            {
                "score_func": "sigmoid",
                "route_norm": True,
                "route_scale": 1.0,
                "top_k": 2,
                "num_shared_experts": 2,
            },
        ),
        "description": "torchtitan 0.2.2 full training checkpoint written by CheckpointManager at an interval "
        "step (step-2): flattened model keys + optimizer (AdamW after 2 real training steps with the MoE "
        "load-balancing hook, flattened optimizer.state.<fqn>.exp_avg/exp_avg_sq/step and "
        "optimizer.param_groups.<fqn>.*) + lr_scheduler + dataloader + train_state. Sigmoid, route_norm, "
        "2 shared experts; expert_bias = random start + 2 load-balancing updates.",
    },
    {
        "name": "v030_debug_like",
        "torchtitan_version": "0.3.0",
        "storage_dtype": "float32",
        "num_processes": 1,
        "full_training_checkpoint": False,
        "expert_bias": "random",
        "seq_len": 12,
        "model_args": _args(
            {"max_seq_len": 64, "original_seq_len": 128, "mscale": 0.7, "rope_factor": 40.0,
             "beta_fast": 32.0, "beta_slow": 1.0},
            {"score_func": "softmax", "top_k": 3, "num_shared_experts": 2},
        ),
        "description": "torchtitan 0.3.0 model code and key names (routed_experts.inner_experts.w*_E*, "
        "expert_bias_E, lm_head.weight), debugmodel-like: softmax, top_k 3, 2 shared experts, mscale 0.7. "
        "YaRN is ON although max_seq_len (64, the RoPE cache = training seq_len) <= original_seq_len (128): "
        "0.3.0 applies YaRN whenever rope_factor > 1. Final norm eps 1e-5. Random non-zero expert_bias.",
    },
    {
        "name": "v030_sigmoid_groups_qlora",
        "torchtitan_version": "0.3.0",
        "storage_dtype": "float32",
        "num_processes": 1,
        "full_training_checkpoint": False,
        "expert_bias": "random",
        "seq_len": 12,
        "model_args": _args(
            {
                "n_layers": 3,
                "n_dense_layers": 2,
                "q_lora_rank": 24,
                "max_seq_len": 256,
                "original_seq_len": 64,
                "mscale": 1.0,
                "rope_factor": 40.0,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
            },
            {
                "score_func": "sigmoid",
                "route_norm": True,
                "route_scale": 2.0,
                "top_k": 2,
                "num_shared_experts": 0,
                "num_expert_groups": 4,
                "num_limited_groups": 2,
                "score_before_experts": False,
            },
        ),
        "description": "torchtitan 0.3.0 model code and key names: sigmoid, route_norm, route_scale 2.0, "
        "4 expert groups / 2 limited, q_lora_rank 24, 2 dense layers, no shared experts, random non-zero "
        "expert_bias_E, YaRN on (always in 0.3.0), final norm eps 1e-5.",
    },
]

VARIANTS_BY_NAME = {v["name"]: v for v in VARIANTS}
