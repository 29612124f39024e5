"""Variants of the Qwen3-MoE and gpt-oss reference fixtures (TorchTitan 0.3.0).

Each entry names the family, the TorchTitan model code it is built with, the storage
dtype, whether `expert_bias` is non-zero and whether an `hf/` copy plus a transformers
forward is written. `model_args` holds every field the Swift forward needs; it is written
verbatim (in this order) to `model_args.json`.
"""

QWEN3_ARGS = {
    "family": "qwen3",
    "vocab_size": 48,
    "dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "head_dim": 16,
    "moe_inter_dim": 4,
    "norm_eps": 1e-6,
    "qk_norm": True,
    "rope_type": "rotate_half",
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "max_seq_len": 64,
    "enable_weight_tying": False,
    "moe_args": {
        "num_experts": 8,
        "num_shared_experts": 0,
        "top_k": 2,
        "score_func": "softmax",
        "route_norm": True,
        "route_scale": 1.0,
        "num_expert_groups": None,
        "num_limited_groups": None,
        "gate_bias": False,
        "load_balance_coeff": 1e-3,
    },
}

GPTOSS_ARGS = {
    "family": "gpt_oss",
    "vocab_size": 48,
    "dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "head_dim": 16,
    "moe_inter_dim": 4,
    "norm_eps": 1e-5,
    "qkv_bias": True,
    "wo_bias": True,
    "attention_sinks": True,
    "sliding_window_size": 4,
    "sliding_window_layers": [0],
    "rope_type": "rotate_half",
    "rope_theta": 150000.0,
    "rope_scaling": {
        "type": "yarn",
        "rope_factor": 4.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "original_seq_len": 64,
        "truncate": False,
    },
    "max_seq_len": 256,
    "swiglu_alpha": 1.702,
    "swiglu_limit": 1.5,
    "enable_weight_tying": False,
    "moe_args": {
        "num_experts": 4,
        "num_shared_experts": 0,
        "top_k": 2,
        "score_func": "softmax",
        "route_norm": True,
        "route_scale": 1.0,
        "num_expert_groups": None,
        "num_limited_groups": None,
        "gate_bias": True,
        "load_balance_coeff": 1e-3,
    },
}

_QWEN3_NUMERICS = (
    "Qwen3-MoE as torchtitan 0.3.0 models/qwen3 builds it (_build_qwen3_moe_layers + Qwen3Model.Config, as "
    "its debugmodel_moe does; fused wqkv in the module, saved split as attention.qkv_linear.wq/wk/wv.weight). "
    "Every layer MoE, no shared experts, no dense FFN. Per block: h = x + wo(attn(attention_norm(x))); "
    "out = h + moe(ffn_norm(h)). Attention: GQA 4 query heads / 2 kv heads (query head i uses kv head i // 2), "
    "head_dim 16, no biases; per-head RMSNorm over head_dim on q and k (q_norm/k_norm weights [16]) BEFORE RoPE; "
    "RoPE rotate-half (CosSinRoPE: pairs (j, j+8), inv_freq_j = theta^(-2j/16), theta 1e6, no scaling); "
    "softmax scale head_dim^-0.5 = 0.25; causal. All RMSNorm eps 1e-6 (attention_norm, ffn_norm, q_norm, k_norm, "
    "final norm). Router: gate Linear(dim, 8, no bias) in fp32, softmax over all 8 experts, top-2 chosen on "
    "softmax + expert_bias_E (selection only), weights = un-biased softmax of the chosen experts / (their sum "
    "+ 1e-20) (route_norm), route_scale 1. Experts SwiGLU w2(silu(w1 x) * w3 x) (w1_EFD/w3_EFD [8,4,32], "
    "w2_EDF [8,32,4]); output = sum of weight * expert(x) (scores applied after the experts). lm_head untied."
)

_GPTOSS_NUMERICS = (
    "gpt-oss as torchtitan 0.3.0 models/gpt_oss builds it (_build_gptoss_layers + GptOssModel.Config, as its "
    "debugmodel does) with attn_backend flex, sliding_window_size 4 (not 128) on even layers (layer 0; layer 1 "
    "is full causal) and swiglu_limit 1.5 (not 7) so clamping happens. Per block: h = x + wo(attn(attention_norm(x))); "
    "out = h + moe(ffn_norm(h)). Attention: GQA 4 query heads / 2 kv heads (query head i uses kv head i // 2), "
    "head_dim 16, biased q/k/v (saved split as qkv_linear.wq/wk/wv.weight+bias) and biased wo; no q/k norm. "
    "RoPE rotate-half with YaRN (CosSinRoPE): theta 150000, factor 4, beta_fast 32, beta_slow 1, original_seq_len "
    "64, truncate False: inv_freq_j = base_j/4 * ramp_j + base_j * (1 - ramp_j), ramp_j = clamp((j - low)/(high - "
    "low), 0, 1), low = max(0, 16 ln(64/(32*2pi)) / (2 ln 150000)), high = min(15, 16 ln(64/(1*2pi)) / (2 ln 150000)) "
    "(fractional, not floored); the cos/sin are NOT scaled, instead softmax_scale = 16^-0.5 * (0.1 ln 4 + 1)^2 "
    "(see softmax_scale). Sliding window (layer 0): query q attends key k iff k <= q and q - k < 4. Sinks: "
    "out_h = softmax-attention output of head h * sigmoid(lse_h - sinks[h]), lse_h = logsumexp of the scaled "
    "masked scores (natural log) -- i.e. a softmax with one extra logit sinks[h] whose value contributes nothing. "
    "All RMSNorm eps 1e-5. Router: gate Linear(dim, 4) WITH bias in fp32, softmax over all 4 experts, top-2 on softmax + "
    "expert_bias_E (zero here), weights = chosen softmax / (sum + 1e-20) (route_norm), route_scale 1. Experts: "
    "h = x @ mlp1_weight_EGD[e]^T + mlp1_bias_EG[e] (G = 2*4); glu = h[..., 0::2] (even columns), lin = "
    "h[..., 1::2] (odd columns); glu = min(glu, 1.5); lin = clamp(lin, -1.5, 1.5); y = glu * sigmoid(1.702 glu) "
    "* (lin + 1); out = y @ mlp2_weight_EDF[e]^T + mlp2_bias_ED[e]; MoE output = sum of weight * expert(x). "
    "lm_head untied."
)

VARIANTS = [
    {
        "name": "v030_qwen3_fp32",
        "family": "qwen3",
        "model_args": QWEN3_ARGS,
        "seq_len": 8,
        "storage_dtype": "float32",
        "expert_bias": "zero",
        "num_processes": 1,
        "hf_copy": True,
        "description": "fp32 storage, expert_bias zero. " + _QWEN3_NUMERICS,
    },
    {
        "name": "v030_qwen3_bf16",
        "family": "qwen3",
        "model_args": QWEN3_ARGS,
        "seq_len": 8,
        "storage_dtype": "bfloat16",
        "expert_bias": "zero",
        "num_processes": 1,
        "hf_copy": False,
        "description": ("bf16 export (CheckpointManager export_dtype bfloat16, every tensor bf16); the reference "
                        "forward ran in fp32 on the bf16-rounded weights. expert_bias zero. " + _QWEN3_NUMERICS),
    },
    {
        "name": "v030_gptoss_fp32",
        "family": "gpt_oss",
        "model_args": GPTOSS_ARGS,
        "seq_len": 8,
        "storage_dtype": "float32",
        "expert_bias": "zero",
        "num_processes": 1,
        "hf_copy": True,
        "description": "fp32 storage. " + _GPTOSS_NUMERICS,
    },
    {
        "name": "v030_gptoss_bf16",
        "family": "gpt_oss",
        "model_args": GPTOSS_ARGS,
        "seq_len": 8,
        "storage_dtype": "bfloat16",
        "expert_bias": "zero",
        "num_processes": 1,
        "hf_copy": False,
        "description": ("bf16 export (every tensor bf16); the reference forward ran in fp32 on the bf16-rounded "
                        "weights. " + _GPTOSS_NUMERICS),
    },
]

# After v030_qwen3_fp32/bf16 (the order of the table in README.md). Load-balancing expert_bias and the
# 2-process save share one variant: a separate one of each does not fit the fixtures' size budget.
VARIANTS.insert(2, {
    "name": "v030_qwen3_expert_bias_two_process",
    "family": "qwen3",
    "model_args": dict(QWEN3_ARGS, vocab_size=49),
    "seq_len": 8,
    "storage_dtype": "float32",
    "expert_bias": "random",
    "num_processes": 2,
    "hf_copy": False,
    "description": ("fp32, load-balancing expert_bias_E = 0.05 N(0,1) (selection only; HF Qwen3MoeForCausalLM has "
                    "no expert bias, so no hf/ copy), saved by 2 gloo ranks: torchtitan 0.3.0 "
                    "ParallelDims(dp_shard=2, spmd_backend partial_dtensor) + apply_fsdp_to_decoder (FSDP2 "
                    "fully_shard, Shard(0)), CheckpointManager save on both ranks; vocab 49 so tok_embeddings and "
                    "lm_head split unevenly (rows 0-24 in __0_0.distcp, 25-48 in __1_0.distcp). "
                    + _QWEN3_NUMERICS),
})

VARIANTS_BY_NAME = {v["name"]: v for v in VARIANTS}
