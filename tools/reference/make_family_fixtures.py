#!/usr/bin/env python3
"""Build small Qwen3-MoE and gpt-oss models with TorchTitan 0.3.0's own model code, save
them the way TorchTitan saves checkpoints, and write the reference logits and routing
that moe-eval's Swift forward is tested against. Dev-only; see README.md.

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/make_family_fixtures.py [--seed N] [--out DIR]

Writes Tests/MoEModelsTests/Fixtures/<family>/<variant>/ (qwen3, gpt_oss) with the same
contract as the DeepSeek-V3 fixtures (make_dsv3_fixtures.py); model_args.json holds the
family's own fields (family_variants.py). One worker process per variant, with
PYTHONPATH selecting torchtitan 0.3.0 (default <venv>/tt030).
"""

import argparse
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_OUT = REPO_ROOT / "Tests" / "MoEModelsTests" / "Fixtures"
DEFAULT_SEED = 0

sys.path.insert(0, str(HERE))
from family_variants import VARIANTS, VARIANTS_BY_NAME  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"base seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="fixtures root; variants go to <out>/<family>/<variant> (default Tests/MoEModelsTests/Fixtures)")
    parser.add_argument("--variants", nargs="*", default=None, help="only these variants (default: all)")
    parser.add_argument("--torchtitan-030", default=None, help="folder holding torchtitan 0.3.0 (default <venv>/tt030)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(VARIANTS_BY_NAME[args.worker], args.seed, args.out)
    names = args.variants or [v["name"] for v in VARIANTS]
    unknown = [n for n in names if n not in VARIANTS_BY_NAME]
    if unknown:
        print(f"unknown variant(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    tt_dir = Path(args.torchtitan_030 or Path(sys.prefix) / "tt030")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tt_dir), str(HERE)])
    env.setdefault("PYTHONHASHSEED", "0")
    for name in names:
        print(f"[{name}] torchtitan 0.3.0 from {tt_dir}", flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                   "--seed", str(args.seed), "--out", str(args.out.resolve())]
        result = subprocess.run(command, env=env)
        if result.returncode != 0:
            print(f"[{name}] failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
    return 0


# --------------------------------------------------------------------------- model configs (worker only)

def _qwen3_config(a: dict):
    from torchtitan.models.common import CosSinRoPE, Embedding, Linear
    from torchtitan.models.qwen3 import _EMBEDDING_INIT, _LINEAR_INIT, _build_qwen3_moe_layers, _qwen3_norm
    from torchtitan.models.qwen3.model import Qwen3Model

    moe = a["moe_args"]
    dim, vocab = a["dim"], a["vocab_size"]
    layers = _build_qwen3_moe_layers(
        fuse_qkv=True, n_layers=a["n_layers"], dim=dim, n_heads=a["n_heads"], n_kv_heads=a["n_kv_heads"],
        head_dim=a["head_dim"], moe_hidden_dim=a["moe_inter_dim"], num_experts=moe["num_experts"],
        top_k=moe["top_k"], attn_backend="flex", moe_comm_backend="standard",
        rope=CosSinRoPE.Config(dim=a["head_dim"], max_seq_len=a["max_seq_len"], theta=a["rope_theta"]),
    )
    for layer in layers:
        layer.moe.load_balance_coeff = moe["load_balance_coeff"]
    return Qwen3Model.Config(
        vocab_size=vocab, dim=dim, norm=_qwen3_norm(dim),
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim, param_init=_EMBEDDING_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab, param_init=_LINEAR_INIT),
        layers=layers,
    )


def _gptoss_config(a: dict):
    from torchtitan.models.common import CosSinRoPE, Embedding, Linear, RMSNorm
    from torchtitan.models.gpt_oss import _EMBEDDING_INIT, _NORM_INIT, _build_gptoss_layers, _output_linear_init
    from torchtitan.models.gpt_oss.model import GptOssModel

    moe = a["moe_args"]
    rs = a["rope_scaling"]
    dim, vocab = a["dim"], a["vocab_size"]
    layers = _build_gptoss_layers(
        fuse_qkv=True, dim=dim, n_layers=a["n_layers"], hidden_dim=a["moe_inter_dim"],
        num_experts=moe["num_experts"], top_k=moe["top_k"], load_balance_coeff=moe["load_balance_coeff"],
        attn_backend="flex", moe_comm_backend="standard",
        rope=CosSinRoPE.Config(dim=a["head_dim"], max_seq_len=a["max_seq_len"], theta=a["rope_theta"],
                               scaling="yarn", rope_factor=rs["rope_factor"], beta_fast=rs["beta_fast"],
                               beta_slow=rs["beta_slow"], truncate=rs["truncate"],
                               original_seq_len=rs["original_seq_len"]),
    )
    for index, layer in enumerate(layers):
        att = layer.attention
        # _build_gptoss_layers fixes n_heads 64 / kv 8 / head_dim 64 per layer and window 128;
        # shrink them on the built configs (the layer structure stays torchtitan's).
        from torchtitan.models.common.attention import FusedQKVLinear
        from torchtitan.models.common.linear import Linear as TTLinear
        att.n_heads, att.n_kv_heads, att.head_dim = a["n_heads"], a["n_kv_heads"], a["head_dim"]
        qkv = att.qkv_linear
        assert isinstance(qkv, FusedQKVLinear.Config)
        qkv.head_dim, qkv.n_heads, qkv.n_kv_heads = a["head_dim"], a["n_heads"], a["n_kv_heads"]
        qkv.wqkv.out_features = (a["n_heads"] + 2 * a["n_kv_heads"]) * a["head_dim"]
        att.wo.in_features = a["n_heads"] * a["head_dim"]
        assert isinstance(qkv.wqkv, TTLinear.Config)
        att.sliding_window_size = a["sliding_window_size"] if index in a["sliding_window_layers"] else None
        layer.moe.routed_experts.inner_experts.swiglu_limit = a["swiglu_limit"]
    return GptOssModel.Config(
        vocab_size=vocab, dim=dim,
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim, param_init=_EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=dim, param_init=_NORM_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab, param_init=_output_linear_init(dim)),
        layers=layers,
    )


def build_model(variant: dict, init_seed: int):
    import torch
    torch.manual_seed(init_seed)
    a = variant["model_args"]
    config = _qwen3_config(a) if variant["family"] == "qwen3" else _gptoss_config(a)
    model = config.build()
    with torch.no_grad():
        model.init_states()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.RMSNorm) and module.eps != a["norm_eps"]:
            raise ValueError(f"{name}.eps is {module.eps}, model_args says {a['norm_eps']}")
    return model


# --------------------------------------------------------------------------- patches

def _gptoss_experts_fp32_forward(self, x_RD, num_tokens_per_expert_E):
    # 0.3.0's GptOssGroupedExperts runs torch._grouped_mm on bf16 casts. The reference is
    # fp32: the same mlp1 + bias -> torchtitan's own swiglu(limit) -> mlp2 + bias, per expert.
    import torch
    from torchtitan.models.gpt_oss.moe import swiglu
    outputs = []
    splits = torch.split(x_RD, num_tokens_per_expert_E.tolist(), dim=0)
    for expert, x_expert in enumerate(splits):
        h = torch.matmul(x_expert, self.mlp1_weight_EGD[expert].transpose(-2, -1)) + self.mlp1_bias_EG[expert]
        h = swiglu(h, limit=self.swiglu_limit)
        outputs.append(torch.matmul(h, self.mlp2_weight_EDF[expert].transpose(-2, -1)) + self.mlp2_bias_ED[expert])
    return torch.cat(outputs, dim=0)


def apply_patches(family: str) -> None:
    import tt_common
    import tt_era_b
    from torchtitan.models.gpt_oss.moe import GptOssGroupedExperts
    if family == "gpt_oss":
        # gpt-oss's sinks need flex's logsumexp (return_aux lse), which inductor cannot
        # compile on CPU ("return_lse is not supported yet"). Run torch's flex_attention
        # uncompiled (its eager reference path) inside torchtitan's own FlexAttention
        # module, with the same BlockMasks and the same sink out_transform.
        from torch.nn.attention.flex_attention import flex_attention
        from torchtitan.models.common.attention import FlexAttention
        FlexAttention._compiled_flex_attn = flex_attention
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
    tt_era_b.apply_era_patches()  # fp32 per-expert SwiGLU for the common GroupedExperts (qwen3)
    GptOssGroupedExperts.forward = _gptoss_experts_fp32_forward
    tt_common.apply_cpu_patches()


# --------------------------------------------------------------------------- weights

def _tensors(model):
    """Parameters and the expert_bias_E buffers, in sorted name order (the fused wqkv
    is a parameter; model.state_dict() returns split copies of it)."""
    named = dict(model.named_parameters())
    for name, buf in model.named_buffers():
        if name.endswith("expert_bias_E"):
            named[name] = buf
    return [(k, named[k]) for k in sorted(named)]


def rerandomise(model, generator, expert_bias: str) -> None:
    import torch
    from tt_common import RESIDUAL_SCALE
    with torch.no_grad():
        for key, t in _tensors(model):
            noise = torch.randn(t.shape, generator=generator, dtype=torch.float32)
            fan_in = t.shape[-1]
            if key.endswith("expert_bias_E"):
                v = 0.05 * noise if expert_bias == "random" else torch.zeros_like(noise)
            elif key.endswith("norm.weight"):
                v = 1.0 + 0.1 * noise
            elif key == "tok_embeddings.weight":
                v = RESIDUAL_SCALE * noise
            elif key.endswith("router.gate.weight"):
                v = noise * (2.0 / math.sqrt(fan_in))
            elif key.endswith("router.gate.bias"):
                v = 0.5 * noise
            elif key.endswith("attention.sinks"):
                v = noise
            elif key.endswith("attention.wo.bias") or key.endswith("mlp2_bias_ED"):
                v = RESIDUAL_SCALE * 0.5 * noise
            elif key.endswith("mlp1_bias_EG"):
                v = 0.5 * noise
            elif key.endswith(".bias"):
                v = 0.2 * noise
            elif (key.endswith("attention.wo.weight") or key.endswith("inner_experts.w2_EDF")
                  or key.endswith("mlp2_weight_EDF")):
                v = RESIDUAL_SCALE * noise / math.sqrt(fan_in)
            else:
                v = noise / math.sqrt(fan_in)
            t.copy_(v.to(t.dtype))


def round_to_bf16(model) -> None:
    import torch
    with torch.no_grad():
        for _, t in _tensors(model):
            t.copy_(t.to(torch.bfloat16).to(t.dtype))


# --------------------------------------------------------------------------- forward

def reference_forward(model, tokens):
    import torch
    import tt_common
    model.eval()
    capture = tt_common.RouterCapture(model, "B")
    try:
        with torch.no_grad():
            positions = torch.arange(tokens.shape[1], dtype=torch.int64).unsqueeze(0).expand(tokens.shape[0], -1)
            masks = model.get_attention_masks(positions)
            logits = model(tokens, positions=positions, attention_masks=masks)
        routing, margin = capture.finish()
    finally:
        capture.remove()
    return logits.to(torch.float32), routing, margin


def module_numerics(model, family: str) -> dict:
    attention = model.layers["0"].attention
    if family == "qwen3":
        scale = attention.scaling
        norms = {"attention_norm": attention_norm_eps(model, "attention_norm"),
                 "ffn_norm": attention_norm_eps(model, "ffn_norm"),
                 "q_norm": float(attention.q_norm.eps), "k_norm": float(attention.k_norm.eps)}
    else:
        scale = attention.softmax_scale
        norms = {"attention_norm": attention_norm_eps(model, "attention_norm"),
                 "ffn_norm": attention_norm_eps(model, "ffn_norm")}
    norms["final_norm"] = float(model.norm.eps)
    rope = model.config.layers[0].attention.rope
    result = {
        "softmax_scale": float(scale),
        "final_norm_eps": float(model.norm.eps),
        "norm_eps": norms,
        "yarn_active": bool(rope.scaling == "yarn" and rope.rope_factor > 1.0),
    }
    if family == "gpt_oss":
        result["sliding_window_layers"] = {
            str(i): cfg.attention.sliding_window_size for i, cfg in enumerate(model.config.layers)}
        result["swiglu_limit"] = float(model.layers["0"].moe.routed_experts.inner_experts.swiglu_limit)
    return result


def gptoss_sensitivity(model, tokens, logits) -> dict:
    """max |delta logit| when one gpt-oss feature is switched off (restored afterwards):
    shows that the fixture can tell each feature apart at the Swift tolerance."""
    import torch
    result = {}

    def delta():
        other, _, _ = reference_forward(model, tokens)
        return float((other - logits).abs().max().item())

    layers = list(model.layers.values())
    with torch.no_grad():
        keys = [layer.attn_mask_key for layer in layers]
        for layer in layers:
            layer.attn_mask_key = "basic_mask"
        result["no_sliding_window"] = delta()
        for layer, key in zip(layers, keys):
            layer.attn_mask_key = key
        sinks = [layer.attention.sinks.detach().clone() for layer in layers]
        for layer in layers:
            layer.attention.sinks.fill_(-1e4)
        result["no_sinks"] = delta()
        for layer, value in zip(layers, sinks):
            layer.attention.sinks.copy_(value)
        limits = [layer.moe.routed_experts.inner_experts.swiglu_limit for layer in layers]
        for layer in layers:
            layer.moe.routed_experts.inner_experts.swiglu_limit = 1e9
        result["no_swiglu_clamp"] = delta()
        for layer, value in zip(layers, limits):
            layer.moe.routed_experts.inner_experts.swiglu_limit = value
        biases = [layer.moe.router.gate.bias.detach().clone() for layer in layers]
        for layer in layers:
            layer.moe.router.gate.bias.zero_()
        result["no_router_gate_bias"] = delta()
        for layer, value in zip(layers, biases):
            layer.moe.router.gate.bias.copy_(value)
    if delta() != 0.0:
        raise RuntimeError("sensitivity probes did not restore the model")
    return result


def qwen3_sensitivity(model, tokens, logits) -> dict:
    """max |delta logit| with the q/k norms removed, or every RMSNorm at the common 1e-5
    default instead of Qwen3's 1e-6 (restored afterwards)."""
    import torch
    result = {}

    def delta():
        other, _, _ = reference_forward(model, tokens)
        return float((other - logits).abs().max().item())

    norms = [m for m in model.modules() if isinstance(m, torch.nn.RMSNorm)]
    for m in norms:
        m.eps = 1e-5
    result["norm_eps_1e-5"] = delta()
    for m in norms:
        m.eps = 1e-6
    attentions = [layer.attention for layer in model.layers.values()]
    saved = [(att.q_norm, att.k_norm) for att in attentions]
    for att in attentions:
        att.q_norm, att.k_norm = torch.nn.Identity(), torch.nn.Identity()
    result["no_qk_norm"] = delta()
    for att, (q, k) in zip(attentions, saved):
        att.q_norm, att.k_norm = q, k
    if delta() != 0.0:
        raise RuntimeError("sensitivity probes did not restore the model")
    return result


def attention_norm_eps(model, which: str) -> float:
    values = {float(getattr(layer, which).eps) for layer in model.layers.values()}
    if len(values) != 1:
        raise RuntimeError(f"{which} eps differs between layers: {values}")
    return values.pop()


# --------------------------------------------------------------------------- two processes

def _fsdp_rank(rank: int, world_size: int, variant: dict, weights_path: str, work_dir: str,
               tokens_path: str, port: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.tensor  # noqa: F401
    import tt_era_b
    from torchtitan.distributed import parallel_dims as tt_parallel_dims
    from torchtitan.distributed.fsdp import apply_fsdp_to_decoder
    from torchtitan.distributed.parallel_dims import ParallelDims

    apply_patches(variant["family"])
    # ParallelDims builds meshes on torchtitan's detected device type, "cuda" on a CPU-only machine.
    tt_parallel_dims.device_type = "cpu"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        model = build_model(variant, init_seed=0)
        model.load_state_dict(torch.load(weights_path, weights_only=True))
        parallel_dims = ParallelDims(dp_replicate=1, dp_shard=world_size, cp=1, tp=1, pp=1, ep=1,
                                     world_size=world_size, spmd_backend="partial_dtensor")
        dp_mesh = parallel_dims.get_mesh(["fsdp"])
        apply_fsdp_to_decoder(model, dp_mesh, param_dtype=torch.float32, reduce_dtype=torch.float32,
                              pp_enabled=False)
        saved = torch.load(tokens_path, weights_only=True)
        sharded_logits, _, _ = reference_forward(model, saved["tokens"])
        if rank == 0:
            delta = (sharded_logits - saved["logits"]).abs().max().item()
            print(f"  FSDP-sharded forward vs unsharded reference: max |dlogit| = {delta:.3g}", flush=True)
            if delta > 1e-5:
                raise RuntimeError("FSDP forward disagrees with the unsharded reference")
        tt_era_b.save_model_only(model, Path(work_dir), variant["storage_dtype"])
        dist.barrier()
    finally:
        dist.destroy_process_group()


def save_two_process(model, variant: dict, work_dir: Path, tokens, logits) -> Path:
    import socket

    import torch
    import torch.multiprocessing as mp

    weights_path = work_dir / "weights.pt"
    tokens_path = work_dir / "tokens.pt"
    torch.save(model.state_dict(), weights_path)
    torch.save({"tokens": tokens, "logits": logits}, tokens_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp_rank, args=(2, variant, str(weights_path), str(work_dir), str(tokens_path), port),
             nprocs=2, join=True)
    weights_path.unlink()
    tokens_path.unlink()
    import tt_era_b
    return work_dir / "outputs" / "checkpoint" / f"step-{tt_era_b.SAVE_STEP}"


# --------------------------------------------------------------------------- HF copy

def write_hf_qwen3(model, variant: dict, hf_dir: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from torchtitan.models.qwen3.state_dict_adapter import Qwen3StateDictAdapter
    from transformers import Qwen3MoeConfig

    a = variant["model_args"]
    moe = a["moe_args"]
    adapter = Qwen3StateDictAdapter(model.config, None)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()
             if not k.endswith("expert_bias_E")}
    hf_state = {k: v.contiguous().clone() for k, v in adapter.to_hf(state).items()}
    hf_dir.mkdir(parents=True)
    save_file(dict(sorted(hf_state.items())), str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    config = Qwen3MoeConfig(
        vocab_size=a["vocab_size"], hidden_size=a["dim"], intermediate_size=a["moe_inter_dim"],
        moe_intermediate_size=a["moe_inter_dim"], num_hidden_layers=a["n_layers"],
        num_attention_heads=a["n_heads"], num_key_value_heads=a["n_kv_heads"], head_dim=a["head_dim"],
        hidden_act="silu", max_position_embeddings=a["max_seq_len"], rms_norm_eps=a["norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": a["rope_theta"]},
        tie_word_embeddings=False, attention_bias=False, num_experts=moe["num_experts"],
        num_experts_per_tok=moe["top_k"], norm_topk_prob=moe["route_norm"], decoder_sparse_step=1,
        mlp_only_layers=[], architectures=["Qwen3MoeForCausalLM"], dtype="float32",
    )
    config.to_json_file(str(hf_dir / "config.json"), use_diff=False)


def write_hf_gptoss(model, variant: dict, hf_dir: Path) -> dict:
    """TorchTitan 0.3.0's GptOssStateDictAdapter.to_hf for every tensor it maps; its
    expert entries are keyed `...inner_experts.mlp1_weight` etc. (no `_EGD` suffix) and
    named for MXFP4 `*_blocks`, so they never match the 0.3.0 module's keys and to_hf
    drops them. The four expert tensors are added here under HF's unquantized
    GptOssExperts names with the layout transformers uses: gate_up_proj [E, D, 2F]
    (= mlp1_weight_EGD transposed, gate/linear columns still interleaved even/odd),
    gate_up_proj_bias [E, 2F], down_proj [E, F, D] (= mlp2_weight_EDF transposed),
    down_proj_bias [E, D]."""
    import torch
    from safetensors.torch import save_file
    from torchtitan.models.gpt_oss.state_dict_adapter import GptOssStateDictAdapter
    from transformers import GptOssConfig

    a = variant["model_args"]
    moe = a["moe_args"]
    rs = a["rope_scaling"]
    adapter = GptOssStateDictAdapter(model.config, None)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    hf_state = {k: v.contiguous().clone() for k, v in adapter.to_hf(state).items()}
    mapped = _tt_keys_mapped(adapter, state)
    dropped = sorted(k for k in state if k not in mapped)
    added = []
    for layer in range(a["n_layers"]):
        tt = f"layers.{layer}.moe.routed_experts.inner_experts."
        hf = f"model.layers.{layer}.mlp.experts."
        for hf_name, tt_name, transpose in (("gate_up_proj", "mlp1_weight_EGD", True),
                                            ("gate_up_proj_bias", "mlp1_bias_EG", False),
                                            ("down_proj", "mlp2_weight_EDF", True),
                                            ("down_proj_bias", "mlp2_bias_ED", False)):
            value = state[tt + tt_name]
            hf_state[hf + hf_name] = (value.transpose(1, 2) if transpose else value).contiguous().clone()
            added.append(tt + tt_name)
    hf_dir.mkdir(parents=True)
    save_file(dict(sorted(hf_state.items())), str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    config = GptOssConfig(
        vocab_size=a["vocab_size"], hidden_size=a["dim"], intermediate_size=a["moe_inter_dim"],
        num_hidden_layers=a["n_layers"], num_attention_heads=a["n_heads"], num_key_value_heads=a["n_kv_heads"],
        head_dim=a["head_dim"], num_local_experts=moe["num_experts"], num_experts_per_tok=moe["top_k"],
        sliding_window=a["sliding_window_size"],
        layer_types=["sliding_attention" if i in a["sliding_window_layers"] else "full_attention"
                     for i in range(a["n_layers"])],
        rope_parameters={"rope_type": "yarn", "rope_theta": a["rope_theta"], "factor": rs["rope_factor"],
                         "beta_fast": rs["beta_fast"], "beta_slow": rs["beta_slow"], "truncate": rs["truncate"],
                         "original_max_position_embeddings": rs["original_seq_len"]},
        max_position_embeddings=a["max_seq_len"], rms_norm_eps=a["norm_eps"], swiglu_limit=a["swiglu_limit"],
        attention_bias=True, tie_word_embeddings=False, architectures=["GptOssForCausalLM"], dtype="float32",
    )
    config.to_json_file(str(hf_dir / "config.json"), use_diff=False)
    return {"to_hf_dropped": dropped, "added_by_generator": added}


def _tt_keys_mapped(adapter, state):
    mapped = set()
    for key in state:
        if adapter.to_hf({key: state[key]}):
            mapped.add(key)
    return mapped


def transformers_forward(hf_dir: Path, tokens):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        out = model(input_ids=tokens)
    import transformers
    return out.logits.to(torch.float32), type(model).__name__, transformers.__version__


# --------------------------------------------------------------------------- worker

def run_worker(variant: dict, seed: int, out: Path) -> int:
    import torch
    from importlib import metadata

    import tt_common
    import tt_era_b

    installed = metadata.version("torchtitan")
    if installed != "0.3.0":
        raise RuntimeError(f"needs torchtitan 0.3.0, PYTHONPATH gives {installed}")
    apply_patches(variant["family"])

    name, family = variant["name"], variant["family"]
    a = variant["model_args"]
    seq_len = variant["seq_len"]
    for draw in range(tt_common.MAX_DRAWS):
        model = build_model(variant, tt_common.derived_seed(seed, name, draw, "init"))
        weights = torch.Generator().manual_seed(tt_common.derived_seed(seed, name, draw, "weights"))
        rerandomise(model, weights, variant["expert_bias"])
        if variant["storage_dtype"] == "bfloat16":
            round_to_bf16(model)
        token_generator = torch.Generator().manual_seed(tt_common.derived_seed(seed, name, draw, "tokens"))
        tokens = tt_common.draw_tokens(token_generator, a["vocab_size"], seq_len)
        logits, routing, margin = reference_forward(model, tokens)
        print(f"  draw {draw}: min routing margin {margin:.3g}, max |logit| {logits.abs().max().item():.3g}",
              flush=True)
        if margin >= tt_common.MIN_ROUTING_MARGIN:
            break
    else:
        raise RuntimeError(f"no draw reached a routing margin of {tt_common.MIN_ROUTING_MARGIN}")

    variant_dir = out / family / name
    if variant_dir.exists():
        shutil.rmtree(variant_dir)
    work_dir = variant_dir / ".work"
    work_dir.mkdir(parents=True)
    if variant["num_processes"] == 2:
        step_dir = save_two_process(model, variant, work_dir, tokens, logits)
    else:
        step_dir = tt_era_b.save_model_only(model, work_dir, variant["storage_dtype"])
    tt_common.move_step_dir(step_dir, variant_dir / "checkpoint")
    shutil.rmtree(work_dir)
    files = tt_common.checkpoint_tensor_files(variant_dir / "checkpoint")
    if files != [f"__{rank}_0.distcp" for rank in range(variant["num_processes"])]:
        raise RuntimeError(f"checkpoint holds {files}")

    # Reload the DCP files into a fresh model (NaN-filled) and recompute: must be bit-identical.
    fresh = build_model(variant, init_seed=0)
    import torch.distributed.checkpoint as dcp
    with torch.no_grad():
        for _, t in _tensors(fresh):
            t.fill_(float("nan"))
    state = fresh.state_dict()
    dcp.load(state, checkpoint_id=str(variant_dir / "checkpoint"))
    fresh.load_state_dict(state)
    re_logits, re_routing, _ = reference_forward(fresh, tokens)
    if not torch.equal(re_logits, logits):
        raise RuntimeError(f"reloaded checkpoint gives other logits: max |d| {(re_logits - logits).abs().max()}")
    for index in routing:
        if not torch.equal(re_routing[index]["experts"], routing[index]["experts"]):
            raise RuntimeError("reloaded checkpoint routes differently")
    print(f"  reload check: logits bit-identical, keys {len(state)}", flush=True)

    numerics = module_numerics(model, family)
    record = {
        "name": name,
        "family": family,
        "torchtitan_version": "0.3.0",
        "torchtitan_module": family,
        "seed": seed,
        "storage_dtype": variant["storage_dtype"],
        "yarn_active": numerics["yarn_active"],
        "softmax_scale": numerics["softmax_scale"],
        "final_norm_eps": numerics["final_norm_eps"],
        "norm_eps": numerics["norm_eps"],
        "num_processes": variant["num_processes"],
        "full_training_checkpoint": False,
        "min_routing_margin": float(margin),
        "attention_backend": ("torchtitan FlexAttention with model.get_attention_masks; flex_attention "
                              + ("inductor-compiled on CPU" if family == "qwen3" else
                                 "run uncompiled (eager reference path): inductor on CPU cannot return the "
                                 "logsumexp the sinks need")),
        "expert_compute": "fp32 per-expert loop (patch of 0.3.0's bf16 torch._grouped_mm path; same math)",
    }
    if family == "qwen3":
        record["max_abs_logit_change_if_off"] = qwen3_sensitivity(model, tokens, logits)
        print(f"  sensitivity: {record['max_abs_logit_change_if_off']}", flush=True)
    if family == "gpt_oss":
        record["sliding_window_layers"] = numerics["sliding_window_layers"]
        record["swiglu_limit"] = numerics["swiglu_limit"]
        record["max_abs_logit_change_if_off"] = gptoss_sensitivity(model, tokens, logits)
        print(f"  sensitivity: {record['max_abs_logit_change_if_off']}", flush=True)
    if variant["hf_copy"]:
        if family == "qwen3":
            write_hf_qwen3(model, variant, variant_dir / "hf")
            written_by = "torchtitan 0.3.0 Qwen3StateDictAdapter.to_hf (expert_bias_E dropped: zero here)"
        else:
            keys = write_hf_gptoss(model, variant, variant_dir / "hf")
            written_by = ("torchtitan 0.3.0 GptOssStateDictAdapter.to_hf for all non-expert tensors; it drops "
                          f"{', '.join(k for k in keys['to_hf_dropped'])} (its map uses keys without the _EGD/_EG/"
                          "_EDF/_ED suffixes and MXFP4 *_blocks names); the generator adds the 4 expert tensors per "
                          "layer as HF gate_up_proj [E,D,2F] = mlp1_weight_EGD^T, gate_up_proj_bias, down_proj "
                          "[E,F,D] = mlp2_weight_EDF^T, down_proj_bias")
        hf_logits, arch, tf_version = transformers_forward(variant_dir / "hf", tokens)
        diff = (hf_logits - logits).abs()
        rel = (diff.max() / logits.abs().max()).item()
        hf_experts_note = "transformers forward, eager attention, fp32"
        record["hf"] = {
            "architecture": arch,
            "transformers_version": tf_version,
            "written_by": written_by,
            "max_abs_logit_diff": float(diff.max().item()),
            "max_rel_logit_diff": float(rel),
            "note": hf_experts_note + "; diffs over all positions; hf_expected.json holds the last position",
        }
        # Small on purpose (fixtures budget): transformers' logits at the last position of each row;
        # the max differences above are over every position.
        tt_common.write_json(variant_dir / "hf_expected.json", {
            "positions": "last position of each row (index seq_len - 1)",
            "logits": tt_common.shortest_f32(hf_logits[:, -1, :].numpy()),
        }, compact=True)
        print(f"  transformers {arch}: max |d| {diff.max().item():.3g}, rel {rel:.3g}", flush=True)
    record["description"] = variant["description"]
    tt_common.write_json(variant_dir / "model_args.json", a)
    tt_common.write_json(variant_dir / "variant.json", record)
    tt_common.write_json(variant_dir / "tokens.json", {"tokens": tokens.tolist()}, compact=True)
    tt_common.write_json(variant_dir / "expected.json", tt_common.expected_payload(logits, routing), compact=True)
    print(f"  wrote {variant_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
