#!/usr/bin/env python3
"""Fidelity of moe-eval's bf16 compute (`--compute bf16`) against TorchTitan 0.3.0's own bf16 forward, on the
TorchTitan 0.3.0 fixtures of every family. Dev-only (docs/MODEL.md, "bf16 compute"); CI checks bf16 compute
against the fp32 references instead (Tests/MoEModelsTests/ComputePrecisionTests.swift).

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/bf16_fidelity.py --moe-eval .build/release/moe-eval

For each fixture: TorchTitan's model, loaded from the fixture's checkpoint, with its parameters cast to bf16 as
FSDP's bf16 mixed precision casts them (rounded to nearest even; buffers such as the RoPE table stay fp32), so
activations and the residual stream are bf16 and products run in bf16 with fp32 accumulation inside oneDNN), runs the fixture's tokens; moe-eval runs `forward --compute bf16` and `--compute fp32`
on the same bf16 weights (for fixtures stored as fp32, the bf16 state dict TorchTitan ran, saved as safetensors).
Printed per fixture: relative logit error ‖a − b‖₂/‖b‖₂ and the share of routed token-slots whose expert is
also among the other side's top-k.

Routed experts run through the fixtures' fp32-reference patch of 0.3.0's `torch._grouped_mm` (a per-expert
loop of the same SwiGLU), in the model's dtype: in bf16 that is bf16 matmuls, as `_grouped_mm` on bf16 casts.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent.parent / "Tests" / "MoEModelsTests" / "Fixtures"
VARIANTS = [
    "dsv3/v030_debug_like", "dsv3/v030_sigmoid_groups_qlora",
    "qwen3/v030_qwen3_fp32", "qwen3/v030_qwen3_bf16", "qwen3/v030_qwen3_expert_bias_two_process",
    "gpt_oss/v030_gptoss_fp32", "gpt_oss/v030_gptoss_bf16",
]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help=f"family/variant (default: {' '.join(VARIANTS)})")
    parser.add_argument("--moe-eval", type=Path, help="moe-eval binary (needed unless --worker)")
    parser.add_argument("--torchtitan-030", default=None, help="folder holding torchtitan 0.3.0 (default <venv>/tt030)")
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "OUT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return torchtitan_bf16_forward(args.worker[0], Path(args.worker[1]))
    if args.moe_eval is None:
        print("--moe-eval BIN is required", file=sys.stderr)
        return 2
    tt_dir = Path(args.torchtitan_030 or Path(sys.prefix) / "tt030")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tt_dir), str(HERE)])
    env.setdefault("PYTHONHASHSEED", "0")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bf16_fidelity_") as work:
        work = Path(work)
        for variant in args.variants or VARIANTS:
            folder = FIXTURES / variant
            out = work / variant.replace("/", "_")
            out.mkdir()
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", variant, str(out)],
                           env=env, check=True)
            torchtitan = json.loads((out / "torchtitan_bf16.json").read_text())
            torchtitan_fp32 = json.loads((folder / "expected.json").read_text())
            info = json.loads((folder / "variant.json").read_text())
            # fp32 fixtures: the very bf16 weights TorchTitan ran, under TorchTitan's names (buffers as they were).
            stored = folder / "checkpoint" if info["storage_dtype"] == "bfloat16" else out / "bf16.safetensors"
            bf16_checkpoint = [stored, "--model-args", folder / "model_args.json"]
            ours = {}
            for compute in ("bf16", "fp32"):
                result = out / f"moe_eval_{compute}.json"
                subprocess.run([args.moe_eval, "forward", "--checkpoint", *bf16_checkpoint, "--tokens-file",
                                folder / "tokens.json", "--output", result, "--compute", compute], check=True)
                ours[compute] = json.loads(result.read_text())
            rows.append((variant, info["storage_dtype"],
                         compare(ours["bf16"], torchtitan), compare(ours["fp32"], torchtitan),
                         compare(torchtitan, torchtitan_fp32), compare(ours["bf16"], torchtitan_fp32)))
    print("| fixture | stored | moe-eval bf16 vs TT bf16 | moe-eval fp32 vs TT bf16 | TT bf16 vs TT fp32 "
          "| moe-eval bf16 vs TT fp32 |")
    print("|---|---|---|---|---|---|")
    for variant, stored, *figures in rows:
        cells = [f"{error:.2e} / {agreement:.2%}" for error, agreement in figures]
        print(f"| {variant} | {stored} | " + " | ".join(cells) + " |")
    print("(each cell: relative logit error ‖a − b‖₂/‖b‖₂ / routed token-slots that agree)")
    return 0


def compare(a: dict, b: dict) -> tuple[float, float]:
    """(‖a − b‖₂ / ‖b‖₂ over every logit, share of a's token-slots whose expert is in b's top-k for the token)."""
    import numpy as np
    la = np.asarray(a["logits"], dtype=np.float64)
    lb = np.asarray(b["logits"], dtype=np.float64)
    error = float(np.linalg.norm(la - lb) / np.linalg.norm(lb))
    agreeing = slots = 0
    for layer, entry in b["routing"].items():
        for mine, theirs in zip(a["routing"][layer]["experts"], entry["experts"]):
            agreeing += len(set(mine) & set(theirs))
            slots += len(theirs)
    return error, agreeing / max(slots, 1)


def torchtitan_bf16_forward(variant: str, out: Path) -> int:
    import torch
    import torch.distributed.checkpoint as dcp

    import tt_common

    family, name = variant.split("/")
    folder = FIXTURES / variant
    model_args = json.loads((folder / "model_args.json").read_text())
    tokens = torch.tensor(json.loads((folder / "tokens.json").read_text())["tokens"], dtype=torch.int64)
    if family == "dsv3":
        import tt_era_b
        tt_era_b.apply_era_patches()
        tt_common.apply_cpu_patches()
        model = tt_era_b.load_checkpoint_into_fresh_model({"name": name, "model_args": model_args},
                                                          folder / "checkpoint")
        forward = tt_era_b.reference_forward
    else:
        import make_family_fixtures as families
        families.apply_patches(family)
        model = families.build_model({"name": name, "family": family, "model_args": model_args}, init_seed=0)
        with torch.no_grad():
            for _, t in families._tensors(model):
                t.fill_(float("nan"))
        state = model.state_dict()
        dcp.load(state, checkpoint_id=str(folder / "checkpoint"))
        model.load_state_dict(state)
        forward = families.reference_forward
    # As FSDP's MixedPrecisionPolicy(param_dtype=bf16) runs a training forward: parameters in bf16, buffers (the
    # complex RoPE table, expert_bias) as they are — model.to(bf16) would drop the table's imaginary part.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.data = parameter.data.to(torch.bfloat16)
    with torch.no_grad():
        logits, routing, _ = forward(model, tokens)
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "bf16.safetensors"))
    payload = {
        "logits": logits.to(torch.float32).tolist(),
        "routing": {str(layer): {"experts": entry["experts"].reshape(-1, entry["experts"].shape[-1]).tolist()}
                    for layer, entry in routing.items()},
    }
    (out / "torchtitan_bf16.json").write_text(json.dumps(payload))
    print(f"[{variant}] TorchTitan 0.3.0 bf16 forward: logits {list(logits.shape)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
