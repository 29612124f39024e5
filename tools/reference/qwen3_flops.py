#!/usr/bin/env python3
"""TorchTitan 0.3.0's own (nparams, num_flops_per_token) for Qwen3-MoE configs: the golden of
Qwen3CostTests. Builds the models on the meta device (no weights), so the 30B flavor costs nothing.

    PYTHONPATH=<torchtitan 0.3.0> python3 tools/reference/qwen3_flops.py > Tests/MoEModelsTests/Fixtures/qwen3/torchtitan030_flops.json
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from make_family_fixtures import _qwen3_config  # noqa: E402

FIXTURE = Path(__file__).parents[2] / "Tests/MoEModelsTests/Fixtures/qwen3/v030_qwen3_fp32/model_args.json"


def count(config, seq_len):
    with torch.device("meta"):
        model = config.build()
    nparams, flops = config.get_nparams_and_flops(model, seq_len)
    return {"nparams": nparams, "num_flops_per_token": flops, "seq_len": seq_len}


def main():
    from torchtitan.models.qwen3 import qwen3_configs
    out = {"fixture v030_qwen3_fp32": count(_qwen3_config(json.loads(FIXTURE.read_text())), 8)}
    for flavor, seq_len in [("debugmodel_moe", 4096), ("30B-A3B", 4096)]:
        out[flavor] = count(qwen3_configs[flavor](attn_backend="flex"), seq_len)
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
