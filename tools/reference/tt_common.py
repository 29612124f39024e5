"""Shared helpers for the torchtitan fixture workers (run under either torchtitan version).

Everything here is version-neutral: CPU patches, seeding, weight re-randomisation,
routing capture from torchtitan's own router modules, the routing-margin check and
the JSON writers for the fixture contract.
"""

import hashlib
import json
import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

MIN_ROUTING_MARGIN = 1e-4
MAX_DRAWS = 50


# --------------------------------------------------------------------------- patches

_original_histc = torch.histc


def _histc_accepting_integers(input, bins=100, min=0, max=0, *, out=None):
    # TorchTitan 0.2.2 counts tokens per expert with torch.histc on int64 expert ids.
    # CUDA has an integer kernel (returning int64), CPU has none. Counting small
    # integer ids in float32 is exact, and the result is cast back to the input
    # dtype so downstream `.tolist()` split sizes stay ints, as on CUDA.
    if input.is_floating_point():
        return _original_histc(input, bins=bins, min=min, max=max, out=out)
    counts = _original_histc(input.to(torch.float32), bins=bins, min=min, max=max)
    counts = counts.to(input.dtype)
    if out is not None:
        out.copy_(counts)
        return out
    return counts


def apply_cpu_patches() -> None:
    """Patches that let torchtitan's own model code run on CPU without changing its math."""
    torch.histc = _histc_accepting_integers
    # 0.3.0 wraps the router gate in autocast(float32); CPU autocast does not do fp32
    # and disables itself with a warning. The gate runs in fp32 either way.
    warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported")
    # 0.3.0 builds the shared-expert FFN even for num_shared_experts=0, as [0, dim] weights.
    warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
    # DCP's note that a single process without torch.distributed saves/loads alone.
    warnings.filterwarnings("ignore", message="torch.distributed is disabled")
    # Same thread count on every machine, so reductions split the same way.
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# --------------------------------------------------------------------------- seeding

def derived_seed(seed: int, name: str, draw: int, purpose: str = "") -> int:
    digest = hashlib.sha256(f"{seed}:{name}:{draw}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 62) - 1)


def draw_tokens(generator: torch.Generator, vocab_size: int, seq_len: int, batch: int = 2) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch, seq_len), generator=generator, dtype=torch.int64)


# --------------------------------------------------------------------------- weights

# A residual stream of RMS ~0.05 makes every RMSNorm's eps visible in the logits
# (eps 1e-5 against a mean square ~3e-3), so a wrong eps cannot hide inside the
# test tolerance; the norms bring every block input back to O(1).
RESIDUAL_SCALE = 0.025


def _writes_residual(key: str) -> bool:
    return (key.endswith("attention.wo.weight") or key.endswith("feed_forward.w2.weight")
            or key.endswith("shared_experts.w2.weight") or key.endswith("experts.w2")
            or key.endswith("inner_experts.w2_EDF"))


@torch.no_grad()
def rerandomise_weights(model: torch.nn.Module, generator: torch.Generator, expert_bias: str) -> None:
    """Overwrite torchtitan's init with values that make every component matter.

    torchtitan's init (std 0.02, norms = 1, bias = 0) leaves attention and experts
    nearly invisible in the logits and the router nearly uniform. Here: norms
    1 + 0.1·N(0,1); projections N(0, 1/fan_in), those writing the residual stream
    (and the embeddings) scaled by RESIDUAL_SCALE; router gate large enough for
    decisive routing; expert_bias 0.05·N(0,1) where the variant wants it.
    Iterates in sorted key order so values do not depend on module construction order.
    """
    state = model.state_dict(keep_vars=True)
    for key in sorted(state):
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            continue
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
        if key.endswith("expert_bias") or key.endswith("expert_bias_E"):
            values = 0.05 * noise if expert_bias == "random" else torch.zeros_like(noise)
        elif key.endswith("norm.weight"):
            values = 1.0 + 0.1 * noise
        elif key == "tok_embeddings.weight":
            values = RESIDUAL_SCALE * noise
        elif key.endswith("router.gate.weight"):
            values = noise * (2.0 / math.sqrt(tensor.shape[-1]))
        elif _writes_residual(key):
            values = RESIDUAL_SCALE * noise / math.sqrt(tensor.shape[-1])
        else:
            values = noise / math.sqrt(tensor.shape[-1])
        tensor.copy_(values.to(tensor.dtype))


@torch.no_grad()
def round_weights_to_bf16(model: torch.nn.Module) -> None:
    for tensor in model.state_dict(keep_vars=True).values():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            tensor.copy_(tensor.to(torch.bfloat16).to(tensor.dtype))


# --------------------------------------------------------------------------- routing capture

class RouterCapture:
    """Forward hooks on torchtitan's router modules of every MoE layer.

    0.3.0's router returns the fp32 scores itself. 0.2.2's router does not, so the
    gate's output is captured and passed through the router's own score function
    (the same single op the router applies: softmax(dim=1) or sigmoid of the fp32
    logits); the selection is then re-derived and must equal the router's.
    """

    def __init__(self, model: torch.nn.Module, era: str):
        self.era = era
        self.records: dict[int, dict] = {}
        self.handles = []
        for name, layer in model.layers.items():
            if not getattr(layer, "moe_enabled", False):
                continue
            router = layer.moe.router
            index = int(name)
            self.handles.append(router.register_forward_hook(self._router_hook(index)))
            if era == "A":
                self.handles.append(router.gate.register_forward_hook(self._gate_hook(index)))

    def _gate_hook(self, index):
        def hook(module, inputs, output):
            self.records.setdefault(index, {})["gate_logits"] = output.detach().clone()
        return hook

    def _router_hook(self, index):
        def hook(module, inputs, output):
            record = self.records.setdefault(index, {})
            record["router"] = module
            expert_bias = inputs[1] if len(inputs) > 1 else None
            record["expert_bias"] = None if expert_bias is None else expert_bias.detach().clone()
            top_scores, expert_ids = output[0], output[1]
            top_k = module.top_k
            record["weights"] = top_scores.detach().reshape(-1, top_k).clone()
            record["experts"] = expert_ids.detach().reshape(-1, top_k).clone()
            if self.era == "B":
                scores = output[2]
                record["scores"] = scores.detach().reshape(-1, scores.shape[-1]).clone()
        return hook

    def clear(self):
        self.records.clear()

    def remove(self):
        for handle in self.handles:
            handle.remove()

    def finish(self) -> tuple[dict, float]:
        """Return ({layer: {experts, weights, scores}}, min routing margin)."""
        routing = {}
        margin = math.inf
        for index in sorted(self.records):
            record = self.records[index]
            router = record["router"]
            if self.era == "A":
                logits = record["gate_logits"].to(torch.float32)
                if router.score_func == "softmax":
                    scores = torch.softmax(logits, dim=1)
                else:
                    scores = torch.sigmoid(logits)
            else:
                scores = record["scores"]
            layer_margin = selection_margin(router, scores, record["expert_bias"], record["experts"])
            margin = min(margin, layer_margin)
            routing[index] = {
                "experts": record["experts"],
                "weights": record["weights"],
                "scores": scores,
            }
        return routing, margin


@torch.no_grad()
def selection_margin(router, scores: torch.Tensor, expert_bias, selected: torch.Tensor) -> float:
    """Smallest gap between the k-th and (k+1)-th biased selection score (and, with
    node-limited routing, between the last kept and first dropped group score).

    Uses the router's own node-limiting method, and checks that the experts the
    router picked are exactly the top-k of the recomputed selection scores.
    """
    top_k = router.top_k
    for_choice = scores if expert_bias is None else scores + expert_bias
    margin = math.inf
    if router.num_expert_groups is not None:
        groups = router.num_expert_groups
        grouped = for_choice.view(-1, groups, for_choice.shape[-1] // groups)
        group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
        ordered_groups = group_scores.sort(dim=-1, descending=True).values
        kept = router.num_limited_groups
        margin = min(margin, (ordered_groups[:, kept - 1] - ordered_groups[:, kept]).min().item())
        for_choice = router._get_node_limited_routing_scores(for_choice)
    ordered = for_choice.sort(dim=-1, descending=True)
    gaps = ordered.values[:, top_k - 1] - ordered.values[:, top_k]
    margin = min(margin, gaps.min().item())
    expected_sets = ordered.indices[:, :top_k].sort(dim=-1).values
    if not torch.equal(expected_sets, selected.sort(dim=-1).values):
        raise RuntimeError("recomputed top-k selection disagrees with torchtitan's router")
    return margin


# --------------------------------------------------------------------------- JSON

def shortest_f32(values) -> list:
    """fp32 values as Python floats whose repr is the shortest decimal that
    round-trips to the same fp32 value (full fp32 precision, half the digits of a
    double repr)."""
    array = np.asarray(values, dtype=np.float32)
    flat = [float(np.format_float_positional(v, unique=True)) for v in array.ravel()]
    check = np.asarray(flat, dtype=np.float64).astype(np.float32)
    if not np.array_equal(check.view(np.uint32), array.ravel().view(np.uint32)):
        raise RuntimeError("float32 shortest repr did not round-trip")
    return np.asarray(flat, dtype=object).reshape(array.shape).tolist()


def expected_payload(logits: torch.Tensor, routing: dict) -> dict:
    return {
        "logits": shortest_f32(logits.detach().to(torch.float32).numpy()),
        "routing": {
            str(index): {
                "experts": entry["experts"].tolist(),
                "weights": shortest_f32(entry["weights"].to(torch.float32).numpy()),
                "scores": shortest_f32(entry["scores"].to(torch.float32).numpy()),
            }
            for index, entry in sorted(routing.items())
        },
    }


def write_json(path: Path, obj, compact: bool = False) -> None:
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=2)
    path.write_text(text + "\n")


def full_model_args(variant: dict) -> dict:
    """model_args.json content: every Era-A field explicit, in a fixed order."""
    args = variant["model_args"]
    order = ["vocab_size", "dim", "inter_dim", "moe_inter_dim", "n_layers", "n_dense_layers", "n_heads",
             "norm_eps", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
             "max_seq_len", "original_seq_len", "rope_theta", "rope_factor", "beta_fast", "beta_slow", "mscale"]
    moe_order = ["num_experts", "num_shared_experts", "top_k", "score_func", "route_norm", "route_scale",
                 "score_before_experts", "num_expert_groups", "num_limited_groups", "gate_bias",
                 "load_balance_coeff"]
    result = {key: args[key] for key in order}
    result["moe_args"] = {key: args["moe_args"][key] for key in moe_order}
    return result


def move_step_dir(step_dir: Path, destination: Path) -> None:
    """torchtitan writes <dump>/checkpoint/step-N/; the fixture keeps just the DCP files."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for item in sorted(step_dir.iterdir()):
        shutil.move(str(item), destination / item.name)


def checkpoint_tensor_files(checkpoint: Path) -> list[str]:
    return sorted(p.name for p in checkpoint.iterdir() if p.suffix == ".distcp")
