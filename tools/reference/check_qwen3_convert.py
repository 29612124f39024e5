#!/usr/bin/env python3
"""Does transformers reproduce TorchTitan from a `moe-eval convert` output of a Qwen3-MoE fixture? Dev-only.

Loads FOLDER with `Qwen3MoeForCausalLM` in fp32 (no missing or unexpected keys allowed), runs the fixture's
tokens and compares every position's logits and the routed expert sets with TorchTitan's `expected.json`.

    moe-eval convert --checkpoint Tests/MoEModelsTests/Fixtures/qwen3/v030_qwen3_fp32/checkpoint \\
        --model-args Tests/MoEModelsTests/Fixtures/qwen3/v030_qwen3_fp32/model_args.json --no-tokenizer --output /tmp/q
    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/check_qwen3_convert.py /tmp/q [VARIANT]

Exit status 1 when the logits differ by more than 1e-4 x max(1, max|logit|) or any expert set differs.
"""
import json
import sys
from pathlib import Path

import torch
from transformers import Qwen3MoeForCausalLM

FIXTURES = Path(__file__).resolve().parents[2] / "Tests" / "MoEModelsTests" / "Fixtures" / "qwen3"


def main():
    folder = Path(sys.argv[1])
    fixture = FIXTURES / (sys.argv[2] if len(sys.argv) > 2 else "v030_qwen3_fp32")
    model, info = Qwen3MoeForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager",
                                                      output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"transformers loading problems: {problems}")
    tokens = torch.tensor(json.loads((fixture / "tokens.json").read_text())["tokens"])
    expected = json.loads((fixture / "expected.json").read_text())
    with torch.no_grad():
        out = model(tokens, output_router_logits=True)
    reference = torch.tensor(expected["logits"])
    diff = (out.logits - reference).abs().max().item()
    bound = 1e-4 * max(1.0, reference.abs().max().item())
    mismatches = 0
    k = model.config.num_experts_per_tok
    for layer, router_logits in enumerate(out.router_logits):
        chosen = router_logits.topk(k, dim=-1).indices.tolist()
        for t, experts in enumerate(expected["routing"][str(layer)]["experts"]):
            mismatches += set(chosen[t]) != set(experts)
    print(json.dumps({"folder": str(folder), "fixture": fixture.name, "max_abs_logit_diff": diff, "bound": bound,
                      "expert_set_mismatches": mismatches}))
    sys.exit(0 if diff <= bound and mismatches == 0 else 1)


if __name__ == "__main__":
    main()
