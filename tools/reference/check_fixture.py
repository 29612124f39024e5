#!/usr/bin/env python3
"""Round-trip check of DeepSeek-V3 fixtures: load each variant's checkpoint with
torch DCP into a fresh TorchTitan model built from its model_args.json, rerun the
forward on tokens.json, and compare with expected.json. Dev-only; see README.md.

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/check_fixture.py [--fixtures DIR] [VARIANT ...]
"""

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_FIXTURES = REPO_ROOT / "Tests" / "MoEModelsTests" / "Fixtures" / "dsv3"
NON_MODEL_PREFIXES = ("optimizer.", "lr_scheduler.", "dataloader.", "train_state.")
LOGIT_TOLERANCE = 1e-5


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help="variant folder names (default: every folder)")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help=f"default {DEFAULT_FIXTURES}")
    parser.add_argument("--torchtitan-022", default=None, help="folder holding torchtitan 0.2.2 (default <venv>/tt022)")
    parser.add_argument("--torchtitan-030", default=None, help="folder holding torchtitan 0.3.0 (default <venv>/tt030)")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return check_variant(args.worker)
    venv = Path(sys.prefix)
    paths = {"0.2.2": Path(args.torchtitan_022 or venv / "tt022"),
             "0.3.0": Path(args.torchtitan_030 or venv / "tt030")}
    folders = [args.fixtures / name for name in args.variants] if args.variants else sorted(
        p for p in args.fixtures.iterdir() if (p / "variant.json").is_file())
    failures = 0
    for folder in folders:
        version = json.loads((folder / "variant.json").read_text())["torchtitan_version"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(paths[version]), str(HERE)])
        result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(folder.resolve())],
                                env=env)
        failures += result.returncode != 0
    print(f"{len(folders) - failures}/{len(folders)} variants round-trip")
    return 1 if failures else 0


def check_variant(folder: Path) -> int:
    import torch
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    import tt_common

    info = json.loads((folder / "variant.json").read_text())
    model_args = json.loads((folder / "model_args.json").read_text())
    tokens = torch.tensor(json.loads((folder / "tokens.json").read_text())["tokens"], dtype=torch.int64)
    expected = json.loads((folder / "expected.json").read_text())
    if info["torchtitan_version"] == "0.2.2":
        import tt_era_a as era
    else:
        import tt_era_b as era
        era.apply_era_patches()
    tt_common.apply_cpu_patches()
    problems = []
    variant = {"name": info["name"], "model_args": model_args}
    checkpoint = folder / "checkpoint"

    # What the checkpoint holds, read through DCP's own metadata reader.
    metadata = FileSystemReader(str(checkpoint)).read_metadata()
    model = era.load_checkpoint_into_fresh_model(variant, checkpoint)
    model_keys = set(model.state_dict().keys())
    stored = metadata.state_dict_metadata
    tensor_keys = {k for k, v in stored.items() if isinstance(v, TensorStorageMetadata)}
    stored_model_keys = {k for k in stored if not k.startswith(NON_MODEL_PREFIXES)}
    if stored_model_keys != model_keys:
        problems.append(f"model keys differ: {sorted(stored_model_keys ^ model_keys)}")
    storage_dtype = getattr(torch, info["storage_dtype"])
    wrong_dtype = sorted(k for k in model_keys & tensor_keys if stored[k].properties.dtype != storage_dtype)
    if wrong_dtype:
        problems.append(f"tensors not stored as {info['storage_dtype']}: {wrong_dtype[:4]}")
    prefixes = {p for p in NON_MODEL_PREFIXES if any(k.startswith(p) for k in stored)}
    if info["full_training_checkpoint"] != bool(prefixes):
        problems.append(f"non-model entries {sorted(prefixes)} vs full_training_checkpoint "
                        f"{info['full_training_checkpoint']}")
    if info["full_training_checkpoint"] and prefixes != set(NON_MODEL_PREFIXES):
        problems.append(f"full training checkpoint lacks {sorted(set(NON_MODEL_PREFIXES) - prefixes)}")
    files = tt_common.checkpoint_tensor_files(checkpoint)
    if files != [f"__{r}_0.distcp" for r in range(info["num_processes"])]:
        problems.append(f"files {files} for num_processes {info['num_processes']}")
    if info["num_processes"] > 1:
        split = [k for k in model_keys & tensor_keys
                 if len({metadata.storage_data[idx].relative_path for idx in metadata.storage_data
                         if idx.fqn == k}) > 1]
        uneven = [k for k in split if len({tuple(c.sizes) for c in stored[k].chunks}) > 1]
        if not uneven:
            problems.append("no tensor is split unevenly across the rank files")
        summary_split = f", {len(split)} tensors split across files ({len(uneven)} unevenly, e.g. {sorted(uneven)[:2]})"
    else:
        summary_split = ""
    with torch.no_grad():
        not_loaded = [k for k, v in model.state_dict().items() if v.is_floating_point() and torch.isnan(v).any()]
    if not_loaded:
        problems.append(f"tensors not loaded: {not_loaded[:4]}")

    numerics = era.module_numerics(model)
    for key in ("softmax_scale", "final_norm_eps", "yarn_active"):
        if numerics[key] != info[key]:
            problems.append(f"{key}: module has {numerics[key]}, variant.json says {info[key]}")

    logits, routing, margin = era.reference_forward(model, tokens)
    recomputed = tt_common.expected_payload(logits, routing)
    expected_logits = torch.tensor(expected["logits"], dtype=torch.float32)
    logit_delta = (logits - expected_logits).abs().max().item()
    max_logit = expected_logits.abs().max().item()
    if logit_delta > LOGIT_TOLERANCE * max(1.0, max_logit):
        problems.append(f"logits differ by {logit_delta}")
    if set(recomputed["routing"]) != set(expected["routing"]):
        problems.append(f"routed layers {sorted(recomputed['routing'])} vs {sorted(expected['routing'])}")
    weight_delta = score_delta = 0.0
    for layer, entry in expected["routing"].items():
        got = recomputed["routing"].get(layer)
        if got is None:
            continue
        if got["experts"] != entry["experts"]:
            problems.append(f"layer {layer}: selected experts differ")
        weight_delta = max(weight_delta, _max_abs(got["weights"], entry["weights"]))
        score_delta = max(score_delta, _max_abs(got["scores"], entry["scores"]))
        n_tokens = tokens.numel()
        if len(entry["experts"]) != n_tokens or len(entry["scores"]) != n_tokens:
            problems.append(f"layer {layer}: routing rows != {n_tokens} tokens")
    if weight_delta > 1e-6 or score_delta > 1e-6:
        problems.append(f"routing weights/scores differ by {weight_delta}/{score_delta}")
    if not math.isclose(margin, info["min_routing_margin"], rel_tol=0.0, abs_tol=1e-6):
        problems.append(f"min routing margin {margin} vs {info['min_routing_margin']}")
    if margin < tt_common.MIN_ROUTING_MARGIN:
        problems.append(f"min routing margin {margin} below {tt_common.MIN_ROUTING_MARGIN}")

    # How far the logits move if the final norm used the other era's eps: the
    # fixture only tells the eras apart if this is well above the Swift tolerance.
    final_norm = model.norm
    own_eps = final_norm.eps
    final_norm.eps = 1e-5 if numerics["final_norm_eps"] != 1e-5 else None
    swapped_logits, _, _ = era.reference_forward(model, tokens)
    final_norm.eps = own_eps
    eps_sensitivity = (swapped_logits - logits).abs().max().item() / (1e-4 * max(1.0, max_logit))

    # The same forward written again with plain torch ops from the fixture files only.
    import independent_forward
    independent_logits, independent_routing, independent_scale = independent_forward.forward(
        model_args, info, independent_forward.load_weights(checkpoint), tokens)
    independent_delta = (independent_logits - expected_logits).abs().max().item()
    if independent_delta > 1e-4 * max(1.0, max_logit):
        problems.append(f"independent forward differs by {independent_delta}")
    for layer, entry in expected["routing"].items():
        own = [sorted(row) for row in independent_routing[layer].tolist()]
        if own != [sorted(row) for row in entry["experts"]]:
            problems.append(f"layer {layer}: independent forward selects other experts")
    if not math.isclose(independent_scale, info["softmax_scale"], rel_tol=1e-12):
        problems.append(f"softmax_scale from model_args {independent_scale} vs {info['softmax_scale']}")

    hf_summary = ""
    if (folder / "hf").is_dir():
        hf_delta = era.hf_round_trip(variant, folder / "hf", model)
        hf_summary = f", hf/ via from_hf max |dw| {hf_delta:.3g}"
        if hf_delta != 0.0:
            problems.append(f"hf weights differ from the checkpoint by {hf_delta}")

    status = "OK  " if not problems else "FAIL"
    print(f"{status} {info['name']} (torchtitan {info['torchtitan_version']}): max |dlogit| {logit_delta:.3g} "
          f"(max |logit| {max_logit:.3g}), routing identical={all('experts differ' not in p for p in problems)}, "
          f"max |dweight| {weight_delta:.3g}, margin {margin:.3g}, {len(stored_model_keys)} model tensors"
          f"{' + ' + str(len(stored) - len(stored_model_keys)) + ' training entries' if prefixes else ''}"
          f"{summary_split}{hf_summary}; independent plain-torch forward max |dlogit| {independent_delta:.3g}"
          f"; other era's final-norm eps moves logits by "
          f"{eps_sensitivity:.1f}x the 1e-4*max(1,|logit|) tolerance", flush=True)
    for problem in problems:
        print(f"     - {problem}", flush=True)
    return 1 if problems else 0


def _max_abs(a, b) -> float:
    import numpy as np
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


if __name__ == "__main__":
    sys.exit(main())
