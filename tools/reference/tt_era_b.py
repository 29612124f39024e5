"""TorchTitan 0.3.0 (Era B) side of the fixture generator and checker.

Imported only in a process whose PYTHONPATH selects the torchtitan 0.3.0 target folder.
"""

import os
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F

from torchtitan.components.checkpointer.dcp import CheckpointManager
from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
from torchtitan.models.common.attention import FlexAttention, ScaledDotProductAttention
from torchtitan.models.common.moe import GroupedExperts
from torchtitan.models.deepseek_v3 import (
    _EMBEDDING_INIT,
    _NORM_INIT,
    _build_dsv3_layers,
    _build_mtp_layers,
    _output_linear_init,
)
from torchtitan.models.deepseek_v3.model import DeepSeekV3Model

import tt_common

ERA = "B"
SAVE_STEP = 10
ATTENTION_BACKEND = os.environ.get("DSV3_FIXTURE_V030_ATTENTION", "flex")


def _grouped_experts_fp32_forward(self, x_RD: torch.Tensor, num_tokens_per_expert_E: torch.Tensor) -> torch.Tensor:
    # 0.3.0 always runs routed experts through torch._grouped_mm on bf16 casts of
    # activations and weights. The reference is fp32, so the same SwiGLU
    # w2(silu(w1 x) * w3 x) runs per expert in fp32, as 0.2.2's for-loop path does.
    outputs = []
    splits = torch.split(x_RD, num_tokens_per_expert_E.tolist(), dim=0)
    for expert, x_expert in enumerate(splits):
        hidden = F.silu(torch.matmul(x_expert, self.w1_EFD[expert].transpose(-2, -1)))
        hidden = hidden * torch.matmul(x_expert, self.w3_EFD[expert].transpose(-2, -1))
        outputs.append(torch.matmul(hidden, self.w2_EDF[expert].transpose(-2, -1)))
    return torch.cat(outputs, dim=0)


def apply_era_patches() -> None:
    GroupedExperts.forward = _grouped_experts_fp32_forward


def model_config(variant: dict) -> DeepSeekV3Model.Config:
    """The variant in 0.3.0's own config builders (as _debugmodel/_671b build theirs)."""
    a = tt_common.full_model_args(variant)
    moe = a["moe_args"]
    if moe["score_before_experts"]:
        raise ValueError("torchtitan 0.3.0 has no score_before_experts option")
    if moe["gate_bias"]:
        raise ValueError("these fixtures do not use a router gate bias")
    layers = _build_dsv3_layers(
        n_layers=a["n_layers"],
        n_dense_layers=a["n_dense_layers"],
        dim=a["dim"],
        n_heads=a["n_heads"],
        q_lora_rank=a["q_lora_rank"],
        kv_lora_rank=a["kv_lora_rank"],
        qk_nope_head_dim=a["qk_nope_head_dim"],
        qk_rope_head_dim=a["qk_rope_head_dim"],
        v_head_dim=a["v_head_dim"],
        mscale=a["mscale"],
        dense_hidden_dim=a["inter_dim"],
        moe_hidden_dim=a["moe_inter_dim"],
        num_experts=moe["num_experts"],
        num_shared_experts=moe["num_shared_experts"],
        router_top_k=moe["top_k"],
        router_score_func=moe["score_func"],
        router_num_expert_groups=moe["num_expert_groups"],
        router_num_limited_groups=moe["num_limited_groups"],
        router_route_scale=moe["route_scale"],
        router_route_norm=moe["route_norm"],
        attn_backend="flex",
        moe_comm_backend="standard",
        non_blocking_capacity_factor=None,
        rope=ComplexRoPE.Config(
            dim=a["qk_rope_head_dim"],
            max_seq_len=a["max_seq_len"],
            theta=a["rope_theta"],
            scaling="yarn",
            rope_factor=float(a["rope_factor"]),
            beta_fast=float(a["beta_fast"]),
            beta_slow=float(a["beta_slow"]),
            original_seq_len=a["original_seq_len"],
        ),
    )
    for layer in layers:
        if layer.moe is not None:
            layer.moe.load_balance_coeff = moe["load_balance_coeff"]
        if ATTENTION_BACKEND == "sdpa":
            # Fallback only: torchtitan's own SDPA module with is_causal=True equals
            # flex's causal + same-document mask for one unpacked document per row.
            layer.attention.inner_attention = ScaledDotProductAttention.Config()
        elif not isinstance(layer.attention.inner_attention, FlexAttention.Config):
            raise RuntimeError("expected torchtitan's flex attention config")
    dim, vocab = a["dim"], a["vocab_size"]
    return DeepSeekV3Model.Config(
        vocab_size=vocab,
        dim=dim,
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim, param_init=_EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=dim, param_init=_NORM_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab, param_init=_output_linear_init(dim)),
        layers=layers,
        mtp_layers=_build_mtp_layers(layers[-1], dim=dim, num_mtp_layers=0),
    )


def build_model(variant: dict, init_seed: int) -> DeepSeekV3Model:
    torch.manual_seed(init_seed)
    model = model_config(variant).build()
    with torch.no_grad():
        model.init_states()
    norm_eps = tt_common.full_model_args(variant)["norm_eps"]
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.RMSNorm) and module.eps != norm_eps:
            # 0.3.0 hard-codes RMSNorm eps 1e-5; model_args.json must say the same.
            raise ValueError(f"{name}.eps is {module.eps}, model_args says {norm_eps}")
    return model


def module_numerics(model: DeepSeekV3Model) -> dict:
    attention = model.layers["0"].attention
    rope = model.config.layers[0].attention.rope
    yarn = rope.scaling == "yarn" and rope.rope_factor > 1.0
    return {
        "softmax_scale": float(attention.softmax_scale),
        "final_norm_eps": float(model.norm.eps),
        "yarn_active": bool(yarn),
    }


def _positions(tokens: torch.Tensor) -> torch.Tensor:
    # One unpacked document per row: positions 0..L-1, as 0.3.0's dataloader emits them.
    return torch.arange(tokens.shape[1], dtype=torch.int64).unsqueeze(0).expand(tokens.shape[0], -1)


@torch.no_grad()
def reference_forward(model: DeepSeekV3Model, tokens: torch.Tensor):
    model.eval()
    capture = tt_common.RouterCapture(model, ERA)
    try:
        if ATTENTION_BACKEND == "sdpa":
            logits = model(tokens)
        else:
            positions = _positions(tokens)
            masks = model.get_attention_masks(positions)
            logits = model(tokens, positions=positions, attention_masks=masks)
        routing, margin = capture.finish()
    finally:
        capture.remove()
    return logits.to(torch.float32), routing, margin


def save_model_only(model: DeepSeekV3Model, work_dir: Path, export_dtype: str) -> Path:
    config = CheckpointManager.Config(
        enable=True, folder="checkpoint", interval=SAVE_STEP, last_save_model_only=True,
        export_dtype=export_dtype, keep_latest_k=0, async_mode="disabled",
    )
    previous = os.getcwd()
    os.chdir(work_dir)
    try:
        manager = CheckpointManager(
            config, dataloader=None, model_parts=[model], optimizers=None, lr_schedulers=None,
            states={}, sd_adapter=None, base_folder="./outputs",
        )
        manager.save(curr_step=SAVE_STEP, last_step=True)
        manager.close()
    finally:
        os.chdir(previous)
    return work_dir / "outputs" / "checkpoint" / f"step-{SAVE_STEP}"


def load_checkpoint_into_fresh_model(variant: dict, checkpoint: Path) -> DeepSeekV3Model:
    model = build_model(variant, init_seed=0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    state = model.state_dict()
    dcp.load(state, checkpoint_id=str(checkpoint))
    model.load_state_dict(state)
    return model
