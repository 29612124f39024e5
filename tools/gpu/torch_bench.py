#!/usr/bin/env python3
"""The PyTorch eager bf16 side of tools/gpu/check.sh's speed table: DeepSeek-V3 layers of TorchTitan's 16B
flavor shapes (MLA with q_lora_rank 0, 1 dense layer then MoE layers of 64 experts top-6 + 2 shared, softmax
router) with random weights, written in plain PyTorch the way TorchTitan's model computes them in eager mode
(SDPA for prefill attention, a loop over the experts that received tokens). Prints one JSON object.

    python3 torch_bench.py --layers 2 --prefill 4096 16384 --decode-batch 1 32 --context 256
"""
import argparse
import json
import math
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print(json.dumps({"error": "PyTorch is not installed on this machine"}))
    sys.exit(0)

DIM, INTER, MOE_INTER, VOCAB = 2048, 10944, 1408, 102400
HEADS, NOPE, ROPE, VALUE, RANK = 16, 128, 64, 128, 512
EXPERTS, TOP_K, SHARED = 64, 6, 2


def rope(x, cos, sin):
    """Interleaved pairs (x[2i], x[2i+1]) rotated by the position's angle; cos/sin broadcast over heads."""
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class Layer(torch.nn.Module):
    def __init__(self, moe, device):
        super().__init__()
        p = lambda *shape: torch.nn.Parameter(torch.randn(*shape, device=device, dtype=torch.bfloat16) * 0.02,
                                              requires_grad=False)
        self.wq, self.wkv_a = p(HEADS * (NOPE + ROPE), DIM), p(RANK + ROPE, DIM)
        self.wkv_b, self.wo = p(HEADS * (NOPE + VALUE), RANK), p(DIM, HEADS * VALUE)
        self.kv_norm = torch.ones(RANK, device=device, dtype=torch.bfloat16)
        self.moe = moe
        if moe:
            self.gate = p(EXPERTS, DIM)
            self.w1, self.w2, self.w3 = p(EXPERTS, MOE_INTER, DIM), p(EXPERTS, DIM, MOE_INTER), p(EXPERTS, MOE_INTER, DIM)
            self.s1, self.s2, self.s3 = p(SHARED * MOE_INTER, DIM), p(DIM, SHARED * MOE_INTER), p(SHARED * MOE_INTER, DIM)
        else:
            self.f1, self.f2, self.f3 = p(INTER, DIM), p(DIM, INTER), p(INTER, DIM)

    def attention(self, x, cos, sin, cache):
        b, t, _ = x.shape
        q = F.linear(x, self.wq).view(b, t, HEADS, NOPE + ROPE)
        q_nope, q_pe = q.split([NOPE, ROPE], dim=-1)
        q_pe = rope(q_pe, cos[:, None], sin[:, None])
        kv = F.linear(x, self.wkv_a)
        c, k_pe = kv.split([RANK, ROPE], dim=-1)
        c = F.rms_norm(c, (RANK,), self.kv_norm, 1e-5)
        k_pe = rope(k_pe, cos, sin)
        scale = 1 / math.sqrt(NOPE + ROPE)
        if cache is None:
            kvh = F.linear(c, self.wkv_b).view(b, t, HEADS, NOPE + VALUE)
            k_nope, v = kvh.split([NOPE, VALUE], dim=-1)
            k = torch.cat([k_nope, k_pe[:, :, None].expand(b, t, HEADS, ROPE)], dim=-1)
            qq = torch.cat([q_nope, q_pe], dim=-1)
            out = F.scaled_dot_product_attention(qq.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 is_causal=True, scale=scale).transpose(1, 2)
        else:  # decode: the absorbed order over the compressed cache
            cache_c, cache_pe = cache
            cache_c, cache_pe = torch.cat([cache_c, c], 1), torch.cat([cache_pe, k_pe], 1)
            w = self.wkv_b.view(HEADS, NOPE + VALUE, RANK)
            q_lat = torch.einsum("bthd,hdr->bthr", q_nope, w[:, :NOPE])
            scores = (torch.einsum("bthr,bsr->bths", q_lat, cache_c) + torch.einsum("bthd,bsd->bths", q_pe, cache_pe)) * scale
            ctx = torch.einsum("bths,bsr->bthr", scores.float().softmax(-1).to(x.dtype), cache_c)
            out = torch.einsum("bthr,hvr->bthv", ctx, w[:, NOPE:])
        return F.linear(out.reshape(b, t, HEADS * VALUE), self.wo)

    def ffn(self, x):
        if not self.moe:
            return F.linear(F.silu(F.linear(x, self.f1)) * F.linear(x, self.f3), self.f2)
        shape = x.shape
        x = x.reshape(-1, DIM)
        scores = F.linear(x.float(), self.gate.float()).softmax(-1)
        weights, experts = scores.topk(TOP_K, dim=-1)
        out = F.linear(F.silu(F.linear(x, self.s1)) * F.linear(x, self.s3), self.s2)
        flat = experts.flatten()
        order = flat.argsort(stable=True)
        counts = torch.bincount(flat, minlength=EXPERTS).tolist()
        tokens = order // TOP_K
        routed = torch.empty(len(flat), DIM, device=x.device, dtype=x.dtype)
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            idx = tokens[start:start + n]
            h = x[idx]
            routed[start:start + n] = F.linear(F.silu(F.linear(h, self.w1[e])) * F.linear(h, self.w3[e]), self.w2[e])
            start += n
        routed = routed * weights.flatten()[order, None].to(x.dtype)
        out.index_add_(0, tokens, routed)
        return out.view(shape)


class Model(torch.nn.Module):
    def __init__(self, layers, device):
        super().__init__()
        self.embed = torch.randn(VOCAB, DIM, device=device, dtype=torch.bfloat16) * 0.02
        self.out = torch.randn(VOCAB, DIM, device=device, dtype=torch.bfloat16) * 0.02
        self.layers = torch.nn.ModuleList([Layer(i >= 1, device) for i in range(layers)])
        freqs = 1.0 / (10000 ** (torch.arange(0, ROPE, 2, device=device).float() / ROPE))
        angles = torch.outer(torch.arange(32768, device=device).float(), freqs)
        self.cos, self.sin = angles.cos().to(torch.bfloat16), angles.sin().to(torch.bfloat16)

    def forward(self, ids, past=0, caches=None):
        t = ids.shape[1]
        cos, sin = self.cos[past:past + t], self.sin[past:past + t]
        h = self.embed[ids]
        for i, layer in enumerate(self.layers):
            h = h + layer.attention(F.rms_norm(h, (DIM,), eps=1e-5), cos, sin, None if caches is None else caches[i])
            h = h + layer.ffn(F.rms_norm(h, (DIM,), eps=1e-5))
        return F.linear(F.rms_norm(h, (DIM,), eps=1e-5), self.out)


def timed(fn, repeats):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--prefill", type=int, nargs="*", default=[4096, 16384])
    parser.add_argument("--decode-batch", type=int, nargs="*", default=[1, 32])
    parser.add_argument("--context", type=int, default=256, help="cached positions before each decode step")
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": f"PyTorch {torch.__version__} sees no CUDA device"}))
        return 0
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = Model(a.layers, device)
    result = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "layers": a.layers,
              "prefill_tokens_per_s": {}, "decode_tokens_per_s": {}}
    with torch.inference_mode():
        for tokens in a.prefill:
            ids = torch.randint(0, VOCAB, (1, tokens), device=device)
            seconds = timed(lambda: model(ids), a.repeats)
            result["prefill_tokens_per_s"][str(tokens)] = tokens / seconds
        for batch in a.decode_batch:
            caches = [(torch.randn(batch, a.context, RANK, device=device, dtype=torch.bfloat16),
                       torch.randn(batch, a.context, ROPE, device=device, dtype=torch.bfloat16)) for _ in model.layers]
            ids = torch.randint(0, VOCAB, (batch, 1), device=device)
            seconds = timed(lambda: model(ids, past=a.context, caches=caches), a.repeats * 5)
            result["decode_tokens_per_s"][str(batch)] = batch / seconds
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
