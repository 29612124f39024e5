"""A second, torchtitan-free DeepSeek-V3 forward (plain torch ops, fp32) driven only
by a fixture's files: model_args.json, variant.json (yarn_active, final_norm_eps),
the DCP checkpoint and tokens.json. check_fixture.py compares it with expected.json
to confirm the fixture files alone pin down the computation the Swift side must do.
"""

import math
import re
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

_ERA_B_TO_A = [
    (re.compile(r"^lm_head\.weight$"), "output.weight"),
    (re.compile(r"\.moe\.routed_experts\.inner_experts\.(w[123])_E[DF][DF]$"), r".moe.experts.\1"),
    (re.compile(r"\.moe\.expert_bias_E$"), ".moe.expert_bias"),
]
_SKIPPED_PREFIXES = ("optimizer.", "lr_scheduler.", "dataloader.", "train_state.")


def load_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    metadata = FileSystemReader(str(checkpoint)).read_metadata()
    state = {key: torch.empty(tuple(entry.size), dtype=torch.float32)
             for key, entry in metadata.state_dict_metadata.items()
             if isinstance(entry, TensorStorageMetadata) and not key.startswith(_SKIPPED_PREFIXES)}
    dcp.load(state, checkpoint_id=str(checkpoint))
    weights = {}
    for key, value in state.items():
        for pattern, replacement in _ERA_B_TO_A:
            key = pattern.sub(replacement, key)
        weights[key] = value
    return weights


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def swiglu(x, w1, w2, w3):
    return (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def rope_frequencies(args: dict, yarn: bool, length: int) -> torch.Tensor:
    dim, base = args["qk_rope_head_dim"], args["rope_theta"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    if yarn:
        def correction(rotations):
            return dim * math.log(args["original_seq_len"] / (rotations * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(correction(args["beta_fast"])), 0)
        high = min(math.ceil(correction(args["beta_slow"])), dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        freqs = freqs / args["rope_factor"] * ramp + freqs * (1 - ramp)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x, cis):
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * cis.view(1, cis.shape[0], 1, cis.shape[1])).flatten(3)


def softmax_scale(args: dict, yarn: bool) -> float:
    scale = (args["qk_nope_head_dim"] + args["qk_rope_head_dim"]) ** -0.5
    if yarn:
        m = 0.1 * args["mscale"] * math.log(args["rope_factor"]) + 1.0
        scale *= m * m
    return scale


def attention(x, w, prefix, args, cis, scale):
    batch, length, _ = x.shape
    heads, nope, rope, vdim = args["n_heads"], args["qk_nope_head_dim"], args["qk_rope_head_dim"], args["v_head_dim"]
    if args["q_lora_rank"] == 0:
        q = x @ w[prefix + "wq.weight"].T
    else:
        q = rms_norm(x @ w[prefix + "wq_a.weight"].T, w[prefix + "q_norm.weight"], args["norm_eps"])
        q = q @ w[prefix + "wq_b.weight"].T
    q = q.view(batch, length, heads, nope + rope)
    q = torch.cat([q[..., :nope], apply_rope(q[..., nope:], cis)], dim=-1)
    kv = x @ w[prefix + "wkv_a.weight"].T
    latent, k_rope = kv[..., :args["kv_lora_rank"]], kv[..., args["kv_lora_rank"]:]
    k_rope = apply_rope(k_rope.unsqueeze(2), cis)
    kv = rms_norm(latent, w[prefix + "kv_norm.weight"], args["norm_eps"]) @ w[prefix + "wkv_b.weight"].T
    kv = kv.view(batch, length, heads, nope + vdim)
    k = torch.cat([kv[..., :nope], k_rope.expand(-1, -1, heads, -1)], dim=-1)
    v = kv[..., nope:]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(batch, length, heads * vdim)
    return out @ w[prefix + "wo.weight"].T


def route(x, w, prefix, moe):
    scores = x @ w[prefix + "router.gate.weight"].T
    scores = scores.softmax(-1) if moe["score_func"] == "softmax" else scores.sigmoid()
    choice = scores + w[prefix + "expert_bias"] if prefix + "expert_bias" in w else scores.clone()
    if moe["num_expert_groups"] is not None:
        groups = moe["num_expert_groups"]
        grouped = choice.view(-1, groups, choice.shape[-1] // groups)
        group_scores = grouped.topk(2, dim=-1).values.sum(-1)
        keep = group_scores.topk(moe["num_limited_groups"], dim=-1).indices
        dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter(1, keep, False)
        choice = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).view(-1, choice.shape[-1])
    experts = choice.topk(moe["top_k"], dim=-1).indices
    weights = scores.gather(1, experts)
    if moe["route_norm"]:
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    return experts, weights * moe["route_scale"]


def moe_block(x, w, prefix, moe):
    flat = x.reshape(-1, x.shape[-1])
    experts, weights = route(flat, w, prefix, moe)
    out = torch.zeros_like(flat)
    for slot in range(moe["top_k"]):
        for expert in experts[:, slot].unique().tolist():
            rows = (experts[:, slot] == expert).nonzero().squeeze(1)
            weight = weights[rows, slot].unsqueeze(1)
            inputs = flat[rows] * weight if moe["score_before_experts"] else flat[rows]
            y = swiglu(inputs, w[prefix + "experts.w1"][expert], w[prefix + "experts.w2"][expert],
                       w[prefix + "experts.w3"][expert])
            out[rows] += y if moe["score_before_experts"] else y * weight
    shared = prefix + "shared_experts.w1.weight"
    if moe["num_shared_experts"] > 0 and shared in w:
        out += swiglu(flat, w[shared], w[prefix + "shared_experts.w2.weight"], w[prefix + "shared_experts.w3.weight"])
    return out.view_as(x), experts


@torch.no_grad()
def forward(args: dict, variant: dict, weights: dict, tokens: torch.Tensor):
    yarn = variant["yarn_active"]
    cis = rope_frequencies(args, yarn, tokens.shape[1])
    scale = softmax_scale(args, yarn)
    h = weights["tok_embeddings.weight"][tokens]
    routing = {}
    for layer in range(args["n_layers"]):
        prefix = f"layers.{layer}."
        h = h + attention(rms_norm(h, weights[prefix + "attention_norm.weight"], args["norm_eps"]),
                          weights, prefix + "attention.", args, cis, scale)
        normed = rms_norm(h, weights[prefix + "ffn_norm.weight"], args["norm_eps"])
        if layer < args["n_dense_layers"]:
            h = h + swiglu(normed, weights[prefix + "feed_forward.w1.weight"],
                           weights[prefix + "feed_forward.w2.weight"], weights[prefix + "feed_forward.w3.weight"])
        else:
            out, experts = moe_block(normed, weights, prefix + "moe.", args["moe_args"])
            h = h + out
            routing[str(layer)] = experts
    h = rms_norm(h, weights["norm.weight"], variant["final_norm_eps"])
    return h @ weights["output.weight"].T, routing, scale
