#!/usr/bin/env python3
"""Build small DeepSeek-V3 models with TorchTitan's own code, save them the way
TorchTitan saves checkpoints, and write the reference logits and routing that
moe-eval's Swift forward pass is tested against. Dev-only; see README.md.

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/make_dsv3_fixtures.py [--seed N] [--out DIR]

The driver runs one worker process per variant with PYTHONPATH selecting the
torchtitan version the variant needs (0.2.2 and 0.3.0 cannot share a process).
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_OUT = REPO_ROOT / "Tests" / "MoEModelsTests" / "Fixtures" / "dsv3"
DEFAULT_SEED = 0

sys.path.insert(0, str(HERE))
from dsv3_variants import VARIANTS, VARIANTS_BY_NAME  # noqa: E402


def torchtitan_paths(args) -> dict:
    venv = Path(sys.prefix)
    return {
        "0.2.2": Path(args.torchtitan_022 or venv / "tt022"),
        "0.3.0": Path(args.torchtitan_030 or venv / "tt030"),
    }


def worker_env(torchtitan_dir: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(torchtitan_dir), str(HERE)])
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"base seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--variants", nargs="*", default=None, help="only these variants (default: all)")
    parser.add_argument("--torchtitan-022", default=None, help="folder holding torchtitan 0.2.2 (default <venv>/tt022)")
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
    paths = torchtitan_paths(args)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        variant = VARIANTS_BY_NAME[name]
        tt_dir = paths[variant["torchtitan_version"]]
        print(f"[{name}] torchtitan {variant['torchtitan_version']} from {tt_dir}", flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                   "--seed", str(args.seed), "--out", str(args.out.resolve())]
        result = subprocess.run(command, env=worker_env(tt_dir))
        if result.returncode != 0:
            print(f"[{name}] failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
    return 0


# --------------------------------------------------------------------------- worker

def run_worker(variant: dict, seed: int, out: Path) -> int:
    import torch

    import tt_common

    import torchtitan
    version = variant["torchtitan_version"]
    installed = _installed_torchtitan_version()
    if installed != version:
        raise RuntimeError(f"variant needs torchtitan {version}, PYTHONPATH gives {installed} "
                           f"({torchtitan.__file__})")
    if version == "0.2.2":
        import tt_era_a as era
    else:
        import tt_era_b as era
        era.apply_era_patches()
    tt_common.apply_cpu_patches()

    name = variant["name"]
    args = variant["model_args"]
    seq_len = variant["seq_len"]
    training = None
    for draw in range(tt_common.MAX_DRAWS):
        model = era.build_model(variant, tt_common.derived_seed(seed, name, draw, "init"))
        weights = torch.Generator().manual_seed(tt_common.derived_seed(seed, name, draw, "weights"))
        tt_common.rerandomise_weights(model, weights, variant["expert_bias"])
        if variant["storage_dtype"] == "bfloat16":
            tt_common.round_weights_to_bf16(model)
        if variant["full_training_checkpoint"]:
            data = torch.Generator().manual_seed(tt_common.derived_seed(seed, name, draw, "data"))
            training = era.TrainingRun(model, data, seq_len, args["vocab_size"])
            losses = training.train()
            print(f"  training losses: {', '.join(f'{x:.4f}' for x in losses)}", flush=True)
        token_generator = torch.Generator().manual_seed(tt_common.derived_seed(seed, name, draw, "tokens"))
        tokens = tt_common.draw_tokens(token_generator, args["vocab_size"], seq_len)
        logits, routing, margin = era.reference_forward(model, tokens)
        print(f"  draw {draw}: min routing margin {margin:.3g}, max |logit| {logits.abs().max().item():.3g}",
              flush=True)
        if margin >= tt_common.MIN_ROUTING_MARGIN:
            break
        if training is not None:
            training.close()
            training = None
    else:
        raise RuntimeError(f"no draw reached a routing margin of {tt_common.MIN_ROUTING_MARGIN}")

    variant_dir = out / name
    if variant_dir.exists():
        shutil.rmtree(variant_dir)
    work_dir = variant_dir / ".work"
    work_dir.mkdir(parents=True)
    if variant["full_training_checkpoint"]:
        step_dir = training.save(work_dir)
        training.close()
    elif variant["num_processes"] == 2:
        step_dir = era.save_two_process(model, variant, work_dir, tokens, logits)
    else:
        step_dir = era.save_model_only(model, work_dir, variant["storage_dtype"])
    tt_common.move_step_dir(step_dir, variant_dir / "checkpoint")
    shutil.rmtree(work_dir)
    files = tt_common.checkpoint_tensor_files(variant_dir / "checkpoint")
    expected_files = [f"__{rank}_0.distcp" for rank in range(variant["num_processes"])]
    if files != expected_files:
        raise RuntimeError(f"checkpoint holds {files}, expected {expected_files}")
    if variant.get("hf_copy"):
        era.write_hf_copy(model, variant_dir / "hf")

    numerics = era.module_numerics(model)
    tt_common.write_json(variant_dir / "model_args.json", tt_common.full_model_args(variant))
    tt_common.write_json(variant_dir / "variant.json", {
        "name": name,
        "torchtitan_version": version,
        "seed": seed,
        "storage_dtype": variant["storage_dtype"],
        "yarn_active": numerics["yarn_active"],
        "softmax_scale": numerics["softmax_scale"],
        "final_norm_eps": numerics["final_norm_eps"],
        "num_processes": variant["num_processes"],
        "full_training_checkpoint": variant["full_training_checkpoint"],
        "min_routing_margin": float(margin),
        "description": variant["description"],
    })
    tt_common.write_json(variant_dir / "tokens.json", {"tokens": tokens.tolist()}, compact=True)
    tt_common.write_json(variant_dir / "expected.json", tt_common.expected_payload(logits, routing), compact=True)
    print(f"  wrote {variant_dir}", flush=True)
    return 0


def _installed_torchtitan_version() -> str:
    from importlib import metadata
    return metadata.version("torchtitan")


if __name__ == "__main__":
    sys.exit(main())
