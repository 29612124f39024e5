#!/usr/bin/env python3
"""Does transformers reproduce TorchTitan from a `moe-eval convert` output? Dev-only; see README.md.

For each fixture variant (default: the ones a transformers architecture reproduces: sigmoid-routed ones as
DeepseekV3ForCausalLM, softmax-routed ones without a selection bias as DeepseekV2ForCausalLM):

1. converts `checkpoint/` with our binary, split into 2 shards (`--max-shard-size`);
2. in a TorchTitan process (0.2.2 or 0.3.0, as the fixture): loads the checkpoint into a fresh TorchTitan
   model, runs TorchTitan's own `DeepSeekV3StateDictAdapter.to_hf` on its state dict, and requires our
   safetensors to hold exactly its names, shapes, dtypes and bits (for DeepseekV2, less the all-zero
   `e_score_correction_bias`, which that architecture does not have);
3. in a transformers process (pinned in requirements-transformers.txt): loads the converted folder with the
   architecture its config.json names, in fp32 (no missing/unexpected keys allowed), runs the fixture's tokens and
   compares the logits and routed expert sets with TorchTitan's `expected.json`;
4. writes what transformers loaded and computed as a golden file for the Swift tests
   (Tests/MoEModelsTests/Fixtures/transformers/<variant>.json), so CI checks the converter without
   transformers installed.

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/transformers_agreement.py [--moe-eval BIN] [--all] [VARIANT ...]

Exit status 1 when a reproducible variant disagrees by more than 1e-4 x max(1, max|logit|).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
FIXTURES = REPO_ROOT / "Tests" / "MoEModelsTests" / "Fixtures" / "dsv3"
GOLDEN_DIR = REPO_ROOT / "Tests" / "MoEModelsTests" / "Fixtures" / "transformers"
DEFAULT_VARIANTS = ["v030_sigmoid_groups_qlora", "v022_sigmoid_groups_yarn", "v022_softmax_basic"]
RELATIVE_TOLERANCE = 1e-4


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help=f"fixture variants (default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--all", action="store_true", help="report every fixture variant (goldens only for the default ones)")
    parser.add_argument("--moe-eval", default=os.environ.get("MOE_EVAL_BIN"),
                        help="moe-eval binary (default: $MOE_EVAL_BIN, else `swift build --show-bin-path`)")
    parser.add_argument("--golden-dir", type=Path, default=GOLDEN_DIR, help=f"default {GOLDEN_DIR}")
    parser.add_argument("--no-golden", action="store_true", help="report only")
    parser.add_argument("--torchtitan-022", default=None, help="folder holding torchtitan 0.2.2 (default <venv>/tt022)")
    parser.add_argument("--torchtitan-030", default=None, help="folder holding torchtitan 0.3.0 (default <venv>/tt030)")
    parser.add_argument("--worker", choices=["torchtitan", "transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--fixture", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--converted", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker == "torchtitan":
        return torchtitan_worker(args.fixture, args.converted, args.result)
    if args.worker == "transformers":
        return transformers_worker(args.fixture, args.converted, args.result)

    binary = args.moe_eval or default_binary()
    venv = Path(sys.prefix)
    torchtitan = {"0.2.2": Path(args.torchtitan_022 or venv / "tt022"),
                  "0.3.0": Path(args.torchtitan_030 or venv / "tt030")}
    names = args.variants or (sorted(p.name for p in FIXTURES.iterdir() if (p / "variant.json").is_file())
                              if args.all else DEFAULT_VARIANTS)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="tf-agreement-") as scratch:
        for name in names:
            failures += not run_variant(name, Path(scratch), binary, torchtitan,
                                        write_golden=not args.no_golden and name in DEFAULT_VARIANTS,
                                        golden_dir=args.golden_dir)
    return 1 if failures else 0


def default_binary() -> str:
    bin_path = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO_ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    return str(Path(bin_path) / "moe-eval")


def convert_command(binary: str, fixture: Path, output: Path, max_shard_size: str) -> list:
    return [binary, "convert", "--checkpoint", str(fixture / "checkpoint"), "--model-args",
            str(fixture / "model_args.json"), "--output", str(output), "--dtype", "keep",
            "--max-shard-size", max_shard_size, "--quiet"]


def run_variant(name: str, scratch: Path, binary: str, torchtitan: dict, write_golden: bool, golden_dir: Path) -> bool:
    fixture = FIXTURES / name
    info = json.loads((fixture / "variant.json").read_text())
    score_func = json.loads((fixture / "model_args.json").read_text())["moe_args"]["score_func"]

    # Two shards: half the single-file payload, rounded up, so the first shard closes mid-model.
    single = scratch / f"{name}-single"
    result = subprocess.run(convert_command(binary, fixture, single, "5GB"), capture_output=True, text=True)
    if result.returncode != 0:
        print(f"{name:30s} not converted: {result.stderr.strip()}")
        return score_func != "sigmoid" or info["name"] not in DEFAULT_VARIANTS
    total = json.loads((single / "model.safetensors.index.json").read_text())["metadata"]["total_size"]
    converted = scratch / name
    shard_size = f"{math.ceil(total * 0.6)}"
    command = convert_command(binary, fixture, converted, shard_size)
    subprocess.run(command, check=True, capture_output=True)
    shards = sorted(p.name for p in converted.glob("model-*.safetensors"))

    tt_result = scratch / f"{name}-torchtitan.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(torchtitan[info["torchtitan_version"]]), str(HERE)])
    subprocess.run([sys.executable, __file__, "--worker", "torchtitan", "--fixture", str(fixture),
                    "--converted", str(converted), "--result", str(tt_result)], env=env, check=True)
    tf_result = scratch / f"{name}-transformers.json"
    env["PYTHONPATH"] = str(HERE)
    subprocess.run([sys.executable, __file__, "--worker", "transformers", "--fixture", str(fixture),
                    "--converted", str(converted), "--result", str(tf_result)], env=env, check=True)
    tt = json.loads(tt_result.read_text())
    tf = json.loads(tf_result.read_text())

    agreement = tf["agreement"]
    limit = RELATIVE_TOLERANCE * max(1.0, agreement["max_abs_logit"])
    final_key = "torchtitan_final_norm_eps" if "torchtitan_final_norm_eps" in agreement else "as_loaded"
    ok = tt["bitwise_equal"] and agreement[final_key]["max_abs_diff"] <= limit and agreement[final_key]["expert_sets_differing"] == 0
    architecture = json.loads((converted / "config.json").read_text())["architectures"][0]
    reproducible = score_func == "sigmoid" or architecture == "DeepseekV2ForCausalLM"
    line = (f"{name:30s} shards {len(shards)}  to_hf names/bits {'equal' if tt['bitwise_equal'] else 'DIFFER'}  "
            f"max|logit| {agreement['max_abs_logit']:.3f}  as loaded: max|Δ| {agreement['as_loaded']['max_abs_diff']:.2e} "
            f"(rel {agreement['as_loaded']['max_rel_diff']:.1e}, expert sets differing "
            f"{agreement['as_loaded']['expert_sets_differing']}/{agreement['routed_tokens']})")
    if "torchtitan_final_norm_eps" in agreement:
        patched = agreement["torchtitan_final_norm_eps"]
        line += (f"; final norm eps {info['final_norm_eps']:.3g}: max|Δ| {patched['max_abs_diff']:.2e} "
                 f"(rel {patched['max_rel_diff']:.1e})")
    line += f"; + q/kv norm eps: max|Δ| {agreement['torchtitan_all_norm_eps']['max_abs_diff']:.2e}"
    line += f"  [{architecture}]"
    if not reproducible:
        line += f"  [{score_func} routing that DeepseekV2 cannot express, and DeepseekV3's router is sigmoid-only]"
    elif not ok:
        line += "  FAIL"
    print(line)

    if write_golden and ok:
        golden = {
            "about": ("transformers' view of `moe-eval convert` output for this TorchTitan fixture, written by "
                      "tools/reference/transformers_agreement.py; `tensors` are the names/shapes/dtypes TorchTitan's "
                      "DeepSeekV3StateDictAdapter.to_hf gives (less e_score_correction_bias for DeepseekV2), "
                      "`config` what transformers loaded, `logits` its fp32 forward on `tokens`"),
            "architecture": architecture,
            "variant": name,
            "transformers_version": tf["transformers_version"],
            "torch_version": tf["torch_version"],
            "torchtitan_version": info["torchtitan_version"],
            "convert_arguments": ["--dtype", "keep", "--max-shard-size", shard_size],
            "shards": shards,
            "tensors": tt["tensors"],
            "config": tf["config"],
            "rope": tf["rope"],
            "tokens": tf["tokens"],
            "logits": tf["logits"],
            "agreement_with_torchtitan": agreement,
        }
        if "logits_torchtitan_final_norm_eps" in tf:
            golden["logits_torchtitan_final_norm_eps"] = tf["logits_torchtitan_final_norm_eps"]
        golden_dir.mkdir(parents=True, exist_ok=True)
        (golden_dir / f"{name}.json").write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    return ok or not reproducible


def load_converted(converted: Path) -> dict:
    from safetensors.torch import load_file

    index = json.loads((converted / "model.safetensors.index.json").read_text())
    state = {}
    for filename in sorted(set(index["weight_map"].values())):
        part = load_file(str(converted / filename))
        for key in part:
            if index["weight_map"].get(key) != filename:
                raise RuntimeError(f"{filename} holds {key}, which the index places in {index['weight_map'].get(key)}")
        state.update(part)
    if set(state) != set(index["weight_map"]):
        raise RuntimeError("index weight_map does not match the shard contents")
    total = sum(t.numel() * t.element_size() for t in state.values())
    if total != index["metadata"]["total_size"]:
        raise RuntimeError(f"index total_size {index['metadata']['total_size']} != {total} bytes in the shards")
    return state


# --------------------------------------------------------------------------- TorchTitan worker

def torchtitan_worker(fixture: Path, converted: Path, result: Path) -> int:
    import torch

    import tt_common

    info = json.loads((fixture / "variant.json").read_text())
    variant = {"name": info["name"], "model_args": json.loads((fixture / "model_args.json").read_text())}
    tt_common.apply_cpu_patches()
    if info["torchtitan_version"] == "0.2.2":
        import tt_era_a as era
        from torchtitan.models.deepseek_v3.model.state_dict_adapter import DeepSeekV3StateDictAdapter

        model = era.load_checkpoint_into_fresh_model(variant, fixture / "checkpoint")
        adapter = DeepSeekV3StateDictAdapter(model.model_args, None)
    else:
        import tt_era_b as era
        from torchtitan.models.deepseek_v3.state_dict_adapter import DeepSeekV3StateDictAdapter

        era.apply_era_patches()
        model = era.load_checkpoint_into_fresh_model(variant, fixture / "checkpoint")
        adapter = DeepSeekV3StateDictAdapter(era.model_config(variant), None)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    reference = {k: v.contiguous() for k, v in adapter.to_hf(state).items()}
    ours = load_converted(converted)
    architecture = json.loads((converted / "config.json").read_text())["architectures"][0]
    if architecture == "DeepseekV2ForCausalLM":
        # DeepseekV2 has no selection bias; the converter chose it only because TorchTitan's is all zero.
        for key in [k for k in reference if k.endswith(".mlp.gate.e_score_correction_bias")]:
            if bool(reference.pop(key).abs().max() != 0):
                print(f"  {info['name']}: {key} is not zero, yet the conversion is DeepseekV2", file=sys.stderr)
                return 1
    stored_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[info["storage_dtype"]]

    problems = []
    for key in sorted(set(reference) | set(ours)):
        if key not in ours:
            problems.append(f"{key}: missing from the conversion")
        elif key not in reference:
            problems.append(f"{key}: not produced by to_hf")
        elif ours[key].shape != reference[key].shape:
            problems.append(f"{key}: shape {list(ours[key].shape)} vs to_hf {list(reference[key].shape)}")
        elif ours[key].dtype != reference[key].dtype and ours[key].dtype != stored_dtype:
            problems.append(f"{key}: {ours[key].dtype}, neither to_hf's {reference[key].dtype} nor the stored {stored_dtype}")
        elif not torch.equal(ours[key].to(reference[key].dtype).view(torch.uint8), reference[key].view(torch.uint8)):
            # A bf16 checkpoint loads into TorchTitan's fp32 model; `--dtype keep` keeps bf16, which widens exactly.
            problems.append(f"{key}: values differ")
    for problem in problems[:20]:
        print(f"  {info['name']}: {problem}", file=sys.stderr)
    dtype_names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
    payload = {
        "bitwise_equal": not problems,
        "tensors": {k: {"dtype": dtype_names.get(v.dtype, str(v.dtype)), "shape": list(v.shape)}
                    for k, v in sorted(reference.items())},
    }
    result.write_text(json.dumps(payload))
    return 0


# --------------------------------------------------------------------------- transformers worker

CONFIG_FIELDS = [
    "model_type", "architectures", "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
    "num_hidden_layers", "first_k_dense_replace", "num_attention_heads", "num_key_value_heads", "n_routed_experts",
    "n_shared_experts", "num_experts_per_tok", "n_group", "topk_group", "norm_topk_prob", "routed_scaling_factor",
    "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "hidden_act",
    "max_position_embeddings", "rms_norm_eps", "rope_interleave", "rope_parameters", "attention_bias",
    "tie_word_embeddings", "num_mtp_layers",
]
# DeepseekV2Config has no rope_interleave (it always rotates pairs) nor MTP layers, and one routing method field.
CONFIG_FIELDS_V2 = [f for f in CONFIG_FIELDS if f not in ("rope_interleave", "num_mtp_layers")] + ["topk_method"]


def transformers_worker(fixture: Path, converted: Path, result: Path) -> int:
    import warnings

    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

    import tt_common

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    info = json.loads((fixture / "variant.json").read_text())
    model_args = json.loads((fixture / "model_args.json").read_text())
    tokens = torch.tensor(json.loads((fixture / "tokens.json").read_text())["tokens"], dtype=torch.int64)
    expected = json.loads((fixture / "expected.json").read_text())
    reference = torch.tensor(expected["logits"], dtype=torch.float32)

    model, loading = AutoModelForCausalLM.from_pretrained(
        str(converted), dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    model.eval()
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if loading.get(kind):
            raise RuntimeError(f"transformers loading reported {kind}: {sorted(loading[kind])[:10]}")
    architecture = json.loads((converted / "config.json").read_text())["architectures"][0]
    if type(model).__name__ != architecture or architecture not in ("DeepseekV3ForCausalLM", "DeepseekV2ForCausalLM"):
        raise RuntimeError(f"loaded {type(model).__name__} for {architecture}")

    selected = {}

    def router_hook(index):
        def hook(module, inputs, output):
            selected[index] = output[2].detach().clone()
        return hook

    for index, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if isinstance(gate, (DeepseekV3TopkRouter, DeepseekV2TopkRouter)):
            gate.register_forward_hook(router_hook(index))

    def forward():
        selected.clear()
        with torch.no_grad():
            logits = model(tokens).logits.to(torch.float32)
        differing = routed = 0
        for layer, entry in expected["routing"].items():
            ours = selected[int(layer)]
            for row, experts in enumerate(entry["experts"]):
                routed += 1
                differing += set(ours[row].tolist()) != set(experts)
        diff = (logits - reference).abs().max().item()
        return logits, {"max_abs_diff": diff, "max_rel_diff": diff / reference.abs().max().item(),
                        "expert_sets_differing": differing}, routed

    logits, as_loaded, routed = forward()
    payload = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "tokens": tokens.tolist(),
        "logits": tt_common.shortest_f32(logits.numpy()),
        "agreement": {"max_abs_logit": reference.abs().max().item(), "routed_tokens": routed, "as_loaded": as_loaded},
    }
    # transformers runs every norm with the eps its config gives (q_a/kv_a layernorm: always 1e-6, final norm:
    # rms_norm_eps); TorchTitan's values show how much of the difference those account for.
    final_eps = info["final_norm_eps"]
    if final_eps != model.config.rms_norm_eps:
        model.model.norm.variance_epsilon = final_eps
        patched, payload["agreement"]["torchtitan_final_norm_eps"], _ = forward()
        payload["logits_torchtitan_final_norm_eps"] = tt_common.shortest_f32(patched.numpy())
    for layer in model.model.layers:
        attention = layer.self_attn
        attention.kv_a_layernorm.variance_epsilon = model_args["norm_eps"]
        if attention.q_a_layernorm is not None:
            attention.q_a_layernorm.variance_epsilon = model_args["norm_eps"]
    model.model.norm.variance_epsilon = final_eps
    _, payload["agreement"]["torchtitan_all_norm_eps"], _ = forward()

    config = model.config
    fields = CONFIG_FIELDS if architecture == "DeepseekV3ForCausalLM" else CONFIG_FIELDS_V2
    payload["config"] = {field: getattr(config, field) for field in fields}
    rotary = model.model.rotary_emb
    payload["rope"] = {
        "inv_freq": tt_common.shortest_f32(rotary.inv_freq.numpy()),
        "attention_scaling": float(rotary.attention_scaling),
        "softmax_scale": float(model.model.layers[0].self_attn.scaling),
    }
    result.write_text(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
