#!/usr/bin/env python3
"""A second Qwen3-MoE / gpt-oss forward in plain torch ops, written from the fixture files
only (model_args.json + variant.json numerics + checkpoint/), as a Swift implementer would
read them. No torchtitan import. Compares with expected.json: logits and expert sets.

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/independent_family_forward.py [FIXTURE_DIR ...]

Default: every variant under Tests/MoEModelsTests/Fixtures/{qwen3,gpt_oss}. Exit 1 if a
logit differs by more than 1e-4 relative to max |logit| or an expert set differs.
"""

import json
import math
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO_ROOT / "Tests" / "MoEModelsTests" / "Fixtures"


def load_checkpoint(folder: Path) -> dict:
    metadata = dcp.FileSystemReader(str(folder)).read_metadata()
    state = {k: torch.empty(v.size, dtype=v.properties.dtype) for k, v in metadata.state_dict_metadata.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(state, checkpoint_id=str(folder))
    return {k: v.to(torch.float32) for k, v in state.items()}


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def inv_freq(a: dict) -> torch.Tensor:
    d, base = a["head_dim"], a["rope_theta"]
    freq = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    rs = a.get("rope_scaling")
    if rs and rs["type"] == "yarn" and rs["rope_factor"] > 1:
        def corr(n):
            return d * math.log(rs["original_seq_len"] / (n * 2 * math.pi)) / (2 * math.log(base))
        low, high = corr(rs["beta_fast"]), corr(rs["beta_slow"])
        if rs["truncate"]:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, d - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        freq = freq / rs["rope_factor"] * ramp + freq * (1 - ramp)
    return freq


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def forward(a: dict, v: dict, w: dict, tokens: torch.Tensor):
    gpt = a["family"] == "gpt_oss"
    eps = v["norm_eps"]
    B, L = tokens.shape
    H, KV, hd = a["n_heads"], a["n_kv_heads"], a["head_dim"]
    t = torch.arange(L, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq(a))
    cos = torch.cat([freqs, freqs], -1).cos()[None, :, None, :]
    sin = torch.cat([freqs, freqs], -1).sin()[None, :, None, :]
    x = w["tok_embeddings.weight"][tokens]
    routing = {}
    for i in range(a["n_layers"]):
        p = f"layers.{i}."

        def lin(h, name, bias=gpt):
            out = h @ w[p + name + ".weight"].T
            return out + w[p + name + ".bias"] if bias else out

        h = rms(x, w[p + "attention_norm.weight"], eps["attention_norm"])
        q = lin(h, "attention.qkv_linear.wq").view(B, L, H, hd)
        k = lin(h, "attention.qkv_linear.wk").view(B, L, KV, hd)
        val = lin(h, "attention.qkv_linear.wv").view(B, L, KV, hd)
        if not gpt:
            q = rms(q, w[p + "attention.q_norm.weight"], eps["q_norm"])
            k = rms(k, w[p + "attention.k_norm.weight"], eps["k_norm"])
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = H // KV
        k = k.repeat_interleave(rep, dim=2)
        val = val.repeat_interleave(rep, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * v["softmax_scale"]
        qi, ki = torch.arange(L)[:, None], torch.arange(L)[None, :]
        allowed = ki <= qi
        window = (v.get("sliding_window_layers") or {}).get(str(i))
        if window is not None:
            allowed = allowed & (qi - ki < window)
        scores = scores.masked_fill(~allowed, float("-inf"))
        out = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(scores, -1), val)
        if gpt:
            lse = torch.logsumexp(scores, -1).transpose(1, 2)  # (B, L, H)
            out = out * torch.sigmoid(lse - w[p + "attention.sinks"])[..., None]
        x = x + lin(out.reshape(B, L, H * hd), "attention.wo")

        h = rms(x, w[p + "ffn_norm.weight"], eps["ffn_norm"]).reshape(B * L, -1)
        logits = h @ w[p + "moe.router.gate.weight"].T
        if gpt:
            logits = logits + w[p + "moe.router.gate.bias"]
        probs = torch.softmax(logits, -1)
        choice = probs + w.get(p + "moe.expert_bias_E", torch.zeros(probs.shape[-1]))
        top_k = a["moe_args"]["top_k"]
        ids = choice.topk(top_k, -1).indices
        weights = probs.gather(-1, ids)
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20) * a["moe_args"]["route_scale"]
        routing[str(i)] = ids
        e = p + "moe.routed_experts.inner_experts."
        moe_out = torch.zeros_like(h)
        for r in range(h.shape[0]):
            for j in range(top_k):
                ex = ids[r, j].item()
                hr = h[r]
                if gpt:
                    g = w[e + "mlp1_weight_EGD"][ex] @ hr + w[e + "mlp1_bias_EG"][ex]
                    glu, lin_ = g[0::2].clamp(max=a["swiglu_limit"]), g[1::2].clamp(-a["swiglu_limit"], a["swiglu_limit"])
                    y = glu * torch.sigmoid(a["swiglu_alpha"] * glu) * (lin_ + 1)
                    y = w[e + "mlp2_weight_EDF"][ex] @ y + w[e + "mlp2_bias_ED"][ex]
                else:
                    y = torch.nn.functional.silu(w[e + "w1_EFD"][ex] @ hr) * (w[e + "w3_EFD"][ex] @ hr)
                    y = w[e + "w2_EDF"][ex] @ y
                moe_out[r] += weights[r, j] * y
        x = x + moe_out.view(B, L, -1)
    x = rms(x, w["norm.weight"], eps["final_norm"])
    return x @ w["lm_head.weight"].T, routing


def check(folder: Path) -> bool:
    a = json.loads((folder / "model_args.json").read_text())
    v = json.loads((folder / "variant.json").read_text())
    tokens = torch.tensor(json.loads((folder / "tokens.json").read_text())["tokens"])
    expected = json.loads((folder / "expected.json").read_text())
    with torch.no_grad():
        logits, routing = forward(a, v, load_checkpoint(folder / "checkpoint"), tokens)
    ref = torch.tensor(expected["logits"])
    rel = ((logits - ref).abs().max() / ref.abs().max()).item()
    same = all(sorted(map(sorted, routing[k].tolist())) == sorted(map(sorted, expected["routing"][k]["experts"]))
               for k in expected["routing"])
    ok = rel <= 1e-4 and same
    print(f"{'ok  ' if ok else 'FAIL'} {v['name']}: max rel logit diff {rel:.3g}, expert sets "
          f"{'identical' if same else 'DIFFER'}")
    return ok


def main(argv) -> int:
    folders = [Path(p) for p in argv] or sorted(p for fam in ("qwen3", "gpt_oss") for p in (FIXTURES / fam).iterdir()
                                               if p.is_dir())
    return 0 if all([check(f) for f in folders]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
