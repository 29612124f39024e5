#!/usr/bin/env python3
"""Train moe-eval's embedded demo model: a small DeepSeek-V3 built, trained and saved with
TorchTitan 0.2.2's own code on tinyshakespeare, tokenized with the project's demo tokenizer.
Dev-only; see tools/reference/README.md and assets/demo/README.md.

    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/train_demo_model.py [--steps 800] [--early-step 100]

What comes from TorchTitan 0.2.2: DeepSeekV3Model and its MoE (fp32 for-loop experts, as on GPUs
without grouped GEMM), init_weights, HuggingFaceTokenizer, HuggingFaceTextDataset via
build_text_dataloader (BOS/EOS per document, concatenated, windows of seq_len + 1),
cross_entropy_loss, build_optimizers_with_moe_load_balancing (its optimizer pre-hook updates
expert_bias from the counted loads), build_lr_schedulers, clip_grad_norm_, and CheckpointManager
for both saves (the last-step model-only export with export_dtype="bfloat16").

The driver re-runs this file in a worker whose PYTHONPATH selects torchtitan 0.2.2.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_OUT = REPO_ROOT / "assets" / "demo"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
TOKENIZER_DIR = REPO_ROOT / "assets" / "tokenizers" / "demo-dsv3"
TOKENIZER_DIR_IN_CONFIG = "assets/tokenizers/demo-dsv3"
TORCHTITAN_VERSION = "0.2.2"

FLAVOR = "moe-eval-demo"
SEQ_LEN = 256
BATCH_SIZE = 8
HELDOUT_FRACTION = 0.05
DATASET_NAME = "tinyshakespeare"
REFERENCE_ROWS = 2
REFERENCE_LEN = 16
MIN_ROUTING_MARGIN = 1e-4

# Shapes are bounded by the size budget of assets/demo (two bf16 checkpoints plus the
# reference logits); the 4096-token vocabulary makes the embeddings the largest tensors.
MODEL_ARGS = {
    "vocab_size": 4096,
    "dim": 64,
    "inter_dim": 256,
    "moe_inter_dim": 64,
    "n_layers": 4,
    "n_dense_layers": 1,
    "n_heads": 4,
    "norm_eps": 1e-5,
    "q_lora_rank": 0,
    "kv_lora_rank": 64,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "max_seq_len": SEQ_LEN,
    "original_seq_len": 4096,
    "rope_theta": 10000.0,
    "rope_factor": 40,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 1.0,
    "moe_args": {
        "num_experts": 8,
        "num_shared_experts": 1,
        "top_k": 2,
        "score_func": "softmax",
        "route_norm": False,
        "route_scale": 1.0,
        "score_before_experts": False,
        "num_expert_groups": None,
        "num_limited_groups": None,
        "gate_bias": False,
        "load_balance_coeff": 1e-3,
    },
}

OPTIMIZER = {"name": "AdamW", "lr": 3e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1,
             "implementation": "foreach"}
LR_SCHEDULER = {"warmup_steps": 50, "decay_type": "cosine", "min_lr_factor": 0.1}
MAX_NORM = 1.0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800, help="training steps (default 800)")
    parser.add_argument("--early-step", type=int, default=100, help="step of the early checkpoint (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the weight init (default 0)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"training text (default {DEFAULT_DATA})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--heldout-every", type=int, default=0,
                        help="also print the held-out loss of the live model every N steps (0: off)")
    parser.add_argument("--torchtitan-022", default=None,
                        help="folder holding torchtitan 0.2.2 (default <venv>/tt022)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not 0 < args.early_step < args.steps:
        print(f"--early-step must lie between 0 and --steps ({args.steps})", file=sys.stderr)
        return 2
    if args.worker:
        return run_worker(args, argv)
    torchtitan_dir = Path(args.torchtitan_022 or Path(sys.prefix) / "tt022")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(torchtitan_dir), str(HERE)])
    env.setdefault("PYTHONHASHSEED", "0")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", *argv]
    return subprocess.run(command, env=env).returncode


# --------------------------------------------------------------------------- worker

def run_worker(args, argv) -> int:
    started = time.monotonic()
    import torch

    import tt_common
    tt_common.apply_cpu_patches()
    from importlib import metadata
    installed = metadata.version("torchtitan")
    if installed != TORCHTITAN_VERSION:
        raise RuntimeError(f"needs torchtitan {TORCHTITAN_VERSION}, PYTHONPATH gives {installed}")
    import tt_era_a

    out = args.out.resolve()
    data_path = args.data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    demo_text = (out / "demo_text.txt").read_text()

    tokenizer = build_tokenizer()
    train_docs, heldout_docs, split_offset = split_documents(data_path.read_text())
    print(f"data: {len(train_docs)} training and {len(heldout_docs)} held-out paragraphs "
          f"(held-out from character {split_offset})", flush=True)
    register_dataset(train_docs, heldout_docs)

    variant = {"model_args": MODEL_ARGS}
    model = tt_era_a.build_model(variant, init_seed=args.seed)
    run = Training(model, tokenizer, data_path, args.steps)
    heldout_windows = heldout_batches(tokenizer, data_path)
    print(f"held-out: {sum(w.shape[0] for w in heldout_windows)} windows of {SEQ_LEN + 1} tokens", flush=True)

    import tempfile
    scratch = Path(tempfile.mkdtemp(prefix="moe_eval_demo_"))
    losses, lrs = [], []
    live_heldout = {}
    train_started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        for step in range(1, args.steps + 1):
            loss, lr = run.step()
            losses.append(loss)
            lrs.append(lr)
            if step == 1 or step % 25 == 0:
                print(f"step {step:5d}  loss {loss:.4f}  lr {lr:.2e}  "
                      f"{time.monotonic() - train_started:.0f}s", flush=True)
            if args.heldout_every and step % args.heldout_every == 0:
                live_heldout[step] = heldout_loss(copy_for_eval(model), heldout_windows)
                print(f"          held-out loss {live_heldout[step]:.4f}", flush=True)
            if step in (args.early_step, args.steps):
                run.save_model_only(step, scratch)
        train_seconds = time.monotonic() - train_started
        load_after = os.getloadavg()[0]
    finally:
        run.close()

    steps = (args.early_step, args.steps)
    checkpoint_root = out / "checkpoint"
    if checkpoint_root.exists():
        import shutil
        shutil.rmtree(checkpoint_root)
    checkpoints = {}
    for step in steps:
        destination = checkpoint_root / f"step-{step}"
        tt_common.move_step_dir(scratch / "outputs" / "checkpoint" / f"step-{step}", destination)
        checkpoints[step] = destination
    import shutil
    shutil.rmtree(scratch)

    evaluations = {}
    for step in steps:
        check_stored_checkpoint(checkpoints[step], model if step == args.steps else None)
        loaded = tt_era_a.load_checkpoint_into_fresh_model(variant, checkpoints[step])
        evaluations[step] = evaluate_checkpoint(loaded, heldout_windows)
        print(f"checkpoint step-{step}: held-out loss {evaluations[step]['heldout_loss']:.4f} "
              f"(bf16 weights, fp32 compute)", flush=True)

    final_model = tt_era_a.load_checkpoint_into_fresh_model(variant, checkpoints[args.steps])
    reference = reference_forward(tt_era_a, final_model, tokenizer, demo_text)
    print(f"reference forward: rows at token offsets {reference['offsets']}, "
          f"min routing margin {reference['margin']:.3g}", flush=True)
    numerics = tt_era_a.module_numerics(final_model)
    reference["independent_delta"] = independent_check(checkpoints[args.steps], numerics, reference)
    print(f"independent plain-torch forward from the stored files: max |dlogit| "
          f"{reference['independent_delta']:.3g}, same experts", flush=True)

    counts = parameter_counts(final_model)
    tt_common.write_json(out / "model_args.json", tt_common.full_model_args(variant))
    write_reference_tokens(out / "reference_tokens.json", {
        "tokens": reference["tokens"].tolist(),
        "source": "demo_text.txt",
        "token_offsets": reference["offsets"],
        "checkpoint": f"checkpoint/step-{args.steps}",
        "torchtitan_version": TORCHTITAN_VERSION,
        "storage_dtype": "bfloat16",
        "softmax_scale": numerics["softmax_scale"],
        "final_norm_eps": numerics["final_norm_eps"],
        "yarn_active": numerics["yarn_active"],
        "min_routing_margin": float(reference["margin"]),
    })
    tt_common.write_json(out / "reference_forward.json",
                         tt_common.expected_payload(reference["logits"], reference["routing"]), compact=True)
    (out / "train.toml").write_text(train_toml(args))
    (out / "README.md").write_text(readme(args, argv, losses, lrs, evaluations, live_heldout, counts, numerics,
                                          reference, split_offset, len(train_docs), len(heldout_docs),
                                          sum(w.shape[0] for w in heldout_windows),
                                          train_seconds, time.monotonic() - started, (load_before, load_after)))
    print(f"wrote {out} in {time.monotonic() - started:.0f}s (training {train_seconds:.0f}s)", flush=True)
    return 0


def write_reference_tokens(path: Path, payload: dict) -> None:
    """Indented JSON with each token row on one line."""
    import json
    rows = ",\n".join("    " + json.dumps(row) for row in payload["tokens"])
    rest = json.dumps({k: v for k, v in payload.items() if k != "tokens"}, indent=2)
    path.write_text("{\n  \"tokens\": [\n" + rows + "\n  ],\n" + rest[2:] + "\n")


def build_tokenizer():
    from torchtitan.components.tokenizer import HuggingFaceTokenizer
    tokenizer = HuggingFaceTokenizer(str(TOKENIZER_DIR))
    if tokenizer.get_vocab_size() != MODEL_ARGS["vocab_size"]:
        raise RuntimeError(f"tokenizer vocab {tokenizer.get_vocab_size()} != model vocab {MODEL_ARGS['vocab_size']}")
    return tokenizer


def split_documents(text: str):
    """Blank-line-separated paragraphs (one speech each) are the documents, as the HF `text`
    loader's sample_by="paragraph" would give; the paragraphs starting in the last 5% of the
    file are held out."""
    docs, offsets = [], []
    position = 0
    for chunk in text.split("\n\n"):
        stripped = chunk.strip("\n")
        if stripped:
            docs.append(stripped)
            offsets.append(position)
        position += len(chunk) + 2
    boundary = len(text) * (1.0 - HELDOUT_FRACTION)
    first_heldout = next(i for i, offset in enumerate(offsets) if offset >= boundary)
    return docs[:first_heldout], docs[first_heldout:], offsets[first_heldout]


def register_dataset(train_docs, heldout_docs) -> None:
    """Adds the two splits to torchtitan's dataset registry (docs/datasets.md's extension point)."""
    from datasets import Dataset
    from torchtitan.hf_datasets import DatasetConfig
    from torchtitan.hf_datasets import text_datasets

    def processor(sample):
        return sample["text"]

    text_datasets.DATASETS[DATASET_NAME] = DatasetConfig(
        path="tinyshakespeare/input.txt", loader=lambda path: Dataset.from_dict({"text": train_docs}),
        sample_processor=processor)
    text_datasets.DATASETS[DATASET_NAME + "_heldout"] = DatasetConfig(
        path="tinyshakespeare/input.txt", loader=lambda path: Dataset.from_dict({"text": heldout_docs}),
        sample_processor=processor)


def heldout_batches(tokenizer, data_path):
    """Every full seq_len + 1 window of the held-out paragraphs, built by torchtitan's dataset
    class exactly as for training (not looped), in batches of BATCH_SIZE rows."""
    import torch
    from torchtitan.hf_datasets.text_datasets import HuggingFaceTextDataset
    dataset = HuggingFaceTextDataset(DATASET_NAME + "_heldout", str(data_path), tokenizer, seq_len=SEQ_LEN,
                                     infinite=False)
    windows = [torch.cat([sample["input"], label[-1:]]) for sample, label in dataset]
    stacked = torch.stack(windows)
    return list(stacked.split(BATCH_SIZE))


def copy_for_eval(model):
    import copy
    return copy.deepcopy(model)


def heldout_loss(model, windows) -> float:
    import torch
    from torchtitan.components.loss import cross_entropy_loss
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in windows:
            pred = model(batch[:, :-1])
            total += cross_entropy_loss(pred, batch[:, 1:]).item()
            count += batch[:, 1:].numel()
    return total / count


def evaluate_checkpoint(model, windows) -> dict:
    """Held-out loss, plus the expert loads it routed (0.2.2 counts tokens_per_expert in eval too)."""
    import torch
    for layer in model.layers.values():
        if layer.moe_enabled:
            layer.moe.tokens_per_expert.zero_()
    loss = heldout_loss(model, windows)
    loads = {}
    for name, layer in model.layers.items():
        if layer.moe_enabled:
            counts = layer.moe.tokens_per_expert.to(torch.float64)
            loads[name] = {
                "counts": [int(c) for c in counts.tolist()],
                "cv": float(counts.std(unbiased=False) / counts.mean()),
                "max_over_mean": float(counts.max() / counts.mean()),
                "expert_bias": [float(b) for b in layer.moe.expert_bias.tolist()],
            }
    return {"heldout_loss": loss, "loads": loads}


def check_stored_checkpoint(path: Path, trained_model) -> None:
    """Every model key stored once, in bf16, as 0.2.2's export writes it; for the final step
    also that the stored values are the trained model's rounded to bf16."""
    import torch
    import torch.distributed.checkpoint as dcp
    files = sorted(p.name for p in path.iterdir())
    if files != [".metadata", "__0_0.distcp"]:
        raise RuntimeError(f"{path} holds {files}")
    metadata = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    dtypes = {key: entry.properties.dtype for key, entry in metadata.items()}
    if any(dtype != torch.bfloat16 for dtype in dtypes.values()):
        raise RuntimeError(f"{path}: not every tensor is bf16: {dtypes}")
    if trained_model is None:
        return
    expected = trained_model.state_dict()
    if set(expected) != set(metadata):
        raise RuntimeError(f"{path}: stored keys differ from the model's: {sorted(set(expected) ^ set(metadata))}")
    stored = {key: torch.empty(entry.size, dtype=torch.bfloat16) for key, entry in metadata.items()}
    dcp.load(stored, checkpoint_id=str(path))
    for key, value in expected.items():
        if not torch.equal(stored[key], value.to(torch.bfloat16)):
            raise RuntimeError(f"{path}: {key} is not the trained value rounded to bf16")


def reference_forward(era, model, tokenizer, demo_text: str) -> dict:
    """Logits and routing of torchtitan's fp32 forward on the bf16 checkpoint, for 2 rows of 16
    tokens of the demo text (encoded as one document with BOS/EOS). Rows are the first
    16-token windows, in text order starting with the BOS window, whose routing decisions are
    all at least MIN_ROUTING_MARGIN from a tie, so a faithful reimplementation cannot flip them."""
    import torch
    stream = tokenizer.encode(demo_text, add_bos=True, add_eos=True)
    offsets = []
    for start in range(0, len(stream) - REFERENCE_LEN + 1, REFERENCE_LEN):
        window = torch.tensor([stream[start:start + REFERENCE_LEN]])
        _, _, margin = era.reference_forward(model, window)
        if margin >= MIN_ROUTING_MARGIN:
            offsets.append(start)
            if len(offsets) == REFERENCE_ROWS:
                break
    if len(offsets) < REFERENCE_ROWS:
        raise RuntimeError("the demo text has too few windows with a clear routing margin")
    tokens = torch.tensor([stream[o:o + REFERENCE_LEN] for o in offsets])
    logits, routing, margin = era.reference_forward(model, tokens)
    if margin < MIN_ROUTING_MARGIN:
        raise RuntimeError(f"routing margin {margin} of the batched reference forward is below {MIN_ROUTING_MARGIN}")
    return {"tokens": tokens, "offsets": offsets, "logits": logits, "routing": routing, "margin": margin}


def independent_check(checkpoint: Path, numerics: dict, reference: dict) -> float:
    """independent_forward.py (plain torch ops, no torchtitan) on the stored checkpoint and
    model_args must give the same logits and experts as torchtitan's forward."""
    import independent_forward
    logits, routing, scale = independent_forward.forward(
        MODEL_ARGS, numerics, independent_forward.load_weights(checkpoint), reference["tokens"])
    delta = (logits - reference["logits"]).abs().max().item()
    if delta > 1e-4 * max(1.0, reference["logits"].abs().max().item()):
        raise RuntimeError(f"independent forward differs from torchtitan's by {delta}")
    for layer, entry in reference["routing"].items():
        own = [sorted(row) for row in routing[str(layer)].tolist()]
        if own != [sorted(row) for row in entry["experts"].tolist()]:
            raise RuntimeError(f"layer {layer}: independent forward selects other experts")
    if abs(scale - numerics["softmax_scale"]) > 1e-12 * scale:
        raise RuntimeError(f"softmax_scale {scale} from model_args vs the module's {numerics['softmax_scale']}")
    return delta


def parameter_counts(model) -> dict:
    """torchtitan's own count (get_nparams_and_flops) and the per-token active count from the
    same name buckets: routed experts contribute top_k / num_experts of their weights."""
    args = model.model_args
    total, flops = args.get_nparams_and_flops(model, SEQ_LEN)
    routed = sum(p.numel() for n, p in model.named_parameters() if "moe.experts" in n)
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embedding" in n)
    output = model.output.weight.numel()
    experts, top_k = args.moe_args.num_experts, args.moe_args.top_k
    active = total - routed + routed * top_k // experts
    return {"total": total, "active": active, "routed_experts": routed, "embedding": embedding, "output": output,
            "num_flops_per_token": flops}


# --------------------------------------------------------------------------- training

class Training:
    """torchtitan's Trainer.train_step without parallelism: one batch, loss sum / valid tokens,
    clip_grad_norm_, optimizer step (whose pre-hook updates expert_bias), scheduler step."""

    def __init__(self, model, tokenizer, data_path: Path, steps: int):
        import socket

        import torch.distributed as dist
        from torchtitan.components.checkpoint import CheckpointManager
        from torchtitan.components.lr_scheduler import build_lr_schedulers
        from torchtitan.components.optimizer import build_optimizers_with_moe_load_balancing
        from torchtitan.distributed import ParallelDims
        from torchtitan.hf_datasets.text_datasets import build_text_dataloader

        import tt_era_a
        tt_era_a._use_cpu_meshes()
        if not dist.is_initialized():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        self.model = model
        job = tt_era_a._job_config()
        for key, value in OPTIMIZER.items():
            setattr(job.optimizer, key, value)
        for key, value in LR_SCHEDULER.items():
            setattr(job.lr_scheduler, key, value)
        job.training.steps = steps
        job.training.max_norm = MAX_NORM
        job.training.seq_len = SEQ_LEN
        job.training.local_batch_size = BATCH_SIZE
        job.training.dataset = DATASET_NAME
        job.training.dataset_path = str(data_path)
        job.checkpoint.last_save_model_only = True
        job.checkpoint.export_dtype = "bfloat16"
        self.job = job
        parallel_dims = ParallelDims(dp_replicate=1, dp_shard=1, cp=1, tp=1, pp=1, ep=1, etp=1, world_size=1)
        self.optimizers = build_optimizers_with_moe_load_balancing(
            model_parts=[model], optimizer_config=job.optimizer, parallel_dims=parallel_dims)
        self.lr_schedulers = build_lr_schedulers(self.optimizers, job.lr_scheduler, steps)
        self.dataloader = build_text_dataloader(dp_world_size=1, dp_rank=0, tokenizer=tokenizer, job_config=job,
                                                infinite=True)
        self.batches = iter(self.dataloader)
        self.checkpointer = CheckpointManager(
            dataloader=None, model_parts=[model], optimizers=None, lr_schedulers=None, states={},
            checkpoint_config=job.checkpoint, sd_adapter=None, base_folder="./outputs")
        self.model.train()

    def step(self) -> tuple[float, float]:
        from torchtitan.components.loss import IGNORE_INDEX, cross_entropy_loss
        from torchtitan.distributed import utils as dist_utils
        self.optimizers.zero_grad()
        lr = self.lr_schedulers.schedulers[0].get_last_lr()[0]
        input_dict, labels = next(self.batches)
        global_valid_tokens = (labels != IGNORE_INDEX).sum().float()
        pred = self.model(input_dict["input"])
        loss = cross_entropy_loss(pred, labels) / global_valid_tokens
        del pred
        loss.backward()
        dist_utils.clip_grad_norm_([p for p in self.model.parameters()], self.job.training.max_norm,
                                   foreach=True, pp_mesh=None, ep_enabled=False)
        self.optimizers.step()
        self.lr_schedulers.step()
        return loss.item(), lr

    def save_model_only(self, step: int, scratch: Path) -> None:
        """CheckpointManager's last-step path: model-only, every tensor converted to bf16."""
        previous = os.getcwd()
        os.chdir(scratch)
        try:
            self.checkpointer.save(curr_step=step, last_step=True)
        finally:
            os.chdir(previous)

    def close(self) -> None:
        import torch.distributed as dist
        self.checkpointer.close()
        if dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------- text outputs

def train_toml(args) -> str:
    opt, sched = OPTIMIZER, LR_SCHEDULER
    return f"""# moe-eval's demo model: a small DeepSeek-V3 trained on tinyshakespeare with TorchTitan 0.2.2's
# own model code, by tools/reference/train_demo_model.py (see README.md in this folder).
#
# The flavor "{FLAVOR}" is custom: it is not in TorchTitan's deepseekv3_args table, so TorchTitan
# itself only knows it once registered there. Its arguments, with TorchTitan's field names, are in
# model_args.json next to this file.

[job]
dump_folder = "./outputs"
description = "moe-eval demo DeepSeek-V3 ({args.steps} steps on tinyshakespeare)"

[model]
name = "deepseek_v3"
flavor = "{FLAVOR}"
# The project's demo tokenizer, relative to the repository root.
hf_assets_path = "{TOKENIZER_DIR_IN_CONFIG}"

[optimizer]
name = "{opt['name']}"
lr = {opt['lr']}
beta1 = {opt['beta1']}
beta2 = {opt['beta2']}
eps = {opt['eps']}
weight_decay = {opt['weight_decay']}
implementation = "{opt['implementation']}"

[lr_scheduler]
warmup_steps = {sched['warmup_steps']}
decay_type = "{sched['decay_type']}"
min_lr_factor = {sched['min_lr_factor']}

[training]
local_batch_size = {BATCH_SIZE}
seq_len = {SEQ_LEN}
max_norm = {MAX_NORM}
steps = {args.steps}
# Registered by the training script: the blank-line-separated paragraphs of tinyshakespeare's
# input.txt (../shared/data/tinyshakespeare/input.txt, not shipped), those starting in the last
# {HELDOUT_FRACTION:.0%} held out. No dataset_path, so moe-eval routes the bundled demo_text.txt by default.
dataset = "{DATASET_NAME}"
dtype = "float32"

[parallelism]
data_parallel_replicate_degree = 1
data_parallel_shard_degree = -1
tensor_parallel_degree = 1
pipeline_parallel_degree = 1
context_parallel_degree = 1
expert_parallel_degree = 1
expert_tensor_parallel_degree = 1

[checkpoint]
enable = true
folder = "checkpoint"
# Steps {args.early_step} and {args.steps} were both written the way TorchTitan writes the last step with
# these two settings: model weights only, every tensor (expert_bias included) as bf16.
last_save_model_only = true
export_dtype = "bfloat16"
async_mode = "disabled"

[activation_checkpoint]
mode = "none"
"""


def _loss_table(losses, lrs, steps_to_show) -> str:
    rows = ["| step | training loss | mean of the 25 steps ending here | lr |", "|---:|---:|---:|---:|"]
    for step in steps_to_show:
        window = losses[max(0, step - 25):step]
        rows.append(f"| {step} | {losses[step - 1]:.4f} | {sum(window) / len(window):.4f} | {lrs[step - 1]:.2e} |")
    return "\n".join(rows)


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def readme(args, argv, losses, lrs, evaluations, live_heldout, counts, numerics, reference, split_offset,
           n_train, n_heldout, n_windows, train_seconds, total_seconds, load) -> str:
    early, final = args.early_step, args.steps
    moe = MODEL_ARGS["moe_args"]
    shown = sorted({1, 10, 25, 50, early} | set(range(100, final + 1, 100)) | {final})
    shown = [s for s in shown if s <= final]
    command = "${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/train_demo_model.py"
    extra = " ".join(a for a in argv if a != "--worker")
    if extra:
        command += " " + extra
    load_rows = []
    for step in (early, final):
        for layer, entry in evaluations[step]["loads"].items():
            load_rows.append(
                f"| step-{step} | {layer} | {' '.join(str(c) for c in entry['counts'])} | {entry['cv']:.3f} | "
                f"{entry['max_over_mean']:.2f} | {min(entry['expert_bias']):+.4f} … {max(entry['expert_bias']):+.4f} |")
    live = ""
    if live_heldout:
        live = ("\nHeld-out loss of the live fp32 model during training: "
                + ", ".join(f"step {s}: {v:.4f}" for s, v in sorted(live_heldout.items())) + ".\n")
    early_size = _folder_size(args.out.resolve() / "checkpoint" / f"step-{early}")
    final_size = _folder_size(args.out.resolve() / "checkpoint" / f"step-{final}")
    return f"""# moe-eval demo model

A small DeepSeek-V3 mixture-of-experts model that `moe-eval run` evaluates when no checkpoint is
given. It was built, trained and saved with **TorchTitan {TORCHTITAN_VERSION}'s own code** (its
`DeepSeekV3Model` and MoE, optimizer, expert-bias load balancing, data pipeline and
`CheckpointManager`) on tinyshakespeare, tokenized with the project's demo tokenizer
(`{TOKENIZER_DIR_IN_CONFIG}`). It is a demo: {final} steps on a 2-core CPU, about
{counts['total'] / 1e6:.2f} M parameters. Its text is Shakespeare-flavoured noise, but its routing
is real: `expert_bias` was moved by TorchTitan's auxiliary-loss-free balancing hook at every step.

## Files

| file | content |
|---|---|
| `checkpoint/step-{early}/`, `checkpoint/step-{final}/` | TorchTitan DCP checkpoints (`.metadata` + `__0_0.distcp`), model weights only, flattened v0.2.2 key names (`tok_embeddings.weight`, `layers.1.moe.experts.w1`, `layers.1.moe.expert_bias`, `output.weight`, …), every tensor bf16 (`export_dtype = "bfloat16"`, expert_bias included); {early_size:,} and {final_size:,} bytes |
| `model_args.json` | every `DeepSeekV3ModelArgs` field (same schema as `Tests/MoEModelsTests/Fixtures/dsv3/*/model_args.json`) |
| `train.toml` | the TorchTitan v0.2.2-style train config; flavor `{FLAVOR}` is custom, its args are `model_args.json` |
| `demo_text.txt` | a short original text (verse dialogue and plain prose) written for the project; the default routing text |
| `reference_tokens.json` | `tokens`: 2 × {REFERENCE_LEN} token ids of `demo_text.txt` (encoded as one document with BOS/EOS; rows start at token offsets {reference['offsets']}), plus the checkpoint it belongs to and the module numerics below |
| `reference_forward.json` | TorchTitan's fp32 forward of `checkpoint/step-{final}` (bf16 weights loaded into an fp32 model, as `dcp.load` does) on those tokens, in the fixtures' `expected.json` format: `logits [2][{REFERENCE_LEN}][{MODEL_ARGS['vocab_size']}]` and `routing` per MoE layer (`experts`, `weights`, fp32 `scores`) |

Numerics of the reference forward, read from the TorchTitan module:

* softmax_scale = {numerics['softmax_scale']!r} ((qk_nope + qk_rope)^-0.5; YaRN
  {'on' if numerics['yarn_active'] else 'off'}, since max_seq_len {MODEL_ARGS['max_seq_len']} ≤ original_seq_len {MODEL_ARGS['original_seq_len']});
* final norm eps = {numerics['final_norm_eps']!r} (0.2.2's `nn.RMSNorm(dim)` without eps; all other norms {MODEL_ARGS['norm_eps']:g});
* every routing decision in the reference rows is at least {MIN_ROUTING_MARGIN:g} from a tie
  (smallest margin {reference['margin']:.3g});
* `tools/reference/independent_forward.py` (plain torch ops, from `model_args.json` and the
  checkpoint only) agrees: max |Δlogit| {reference['independent_delta']:.3g}, same experts.

## Model

| argument | value |
|---|---|
| vocab_size | {MODEL_ARGS['vocab_size']} (the tokenizer's size, added tokens included) |
| dim / n_layers / n_dense_layers / inter_dim | {MODEL_ARGS['dim']} / {MODEL_ARGS['n_layers']} / {MODEL_ARGS['n_dense_layers']} / {MODEL_ARGS['inter_dim']} |
| MLA attention | {MODEL_ARGS['n_heads']} heads, q_lora_rank {MODEL_ARGS['q_lora_rank']}, kv_lora_rank {MODEL_ARGS['kv_lora_rank']}, qk_nope {MODEL_ARGS['qk_nope_head_dim']}, qk_rope {MODEL_ARGS['qk_rope_head_dim']}, v {MODEL_ARGS['v_head_dim']} |
| MoE | {moe['num_experts']} routed experts of moe_inter_dim {MODEL_ARGS['moe_inter_dim']}, top-{moe['top_k']}, {moe['num_shared_experts']} shared expert, {moe['score_func']} scores, route_norm {str(moe['route_norm']).lower()}, route_scale {moe['route_scale']}, score_before_experts {str(moe['score_before_experts']).lower()}, load_balance_coeff {moe['load_balance_coeff']:g} |
| max_seq_len | {SEQ_LEN} (= training seq_len) |

| parameters | count |
|---|---:|
| total (TorchTitan's `get_nparams_and_flops`; buffers such as expert_bias not counted) | {counts['total']:,} |
| active per token (routed experts counted × {moe['top_k']}/{moe['num_experts']}; embedding included) | {counts['active']:,} |
| routed experts | {counts['routed_experts']:,} |
| token embedding / output projection | {counts['embedding']:,} / {counts['output']:,} |
| TorchTitan's training FLOPs per token at seq_len {SEQ_LEN} (`num_flops_per_token`) | {counts['num_flops_per_token']:,} |

## How it was made

```sh
{command}
```

Options: `--steps`, `--early-step`, `--seed`, `--data`, `--out`, `--heldout-every`. The script
re-runs itself with `PYTHONPATH=<venv>/tt022` so that TorchTitan 0.2.2 is imported. Wall time on
the 2-core development machine: {train_seconds:.0f} s of training, {total_seconds:.0f} s in all
(1-minute load average {load[0]:.1f} before and {load[1]:.1f} after training: other jobs shared the cores
when it is well above 2; about 0.2 s per step when the cores are free).

* Data: `../shared/data/tinyshakespeare/input.txt`, split into its blank-line-separated
  paragraphs (one speech each); {n_train} paragraphs for training, the {n_heldout} that start at
  or after character {split_offset:,} (the last {HELDOUT_FRACTION:.0%}) held out. Registered in
  TorchTitan's dataset table and read by its `build_text_dataloader`: each paragraph encoded with
  BOS and EOS, concatenated, cut into windows of seq_len + 1 = {SEQ_LEN + 1} tokens, in file order
  (no shuffling, as TorchTitan), looped when exhausted.
* Model: `DeepSeekV3Model(DeepSeekV3ModelArgs)`, `init_weights()` after `torch.manual_seed({args.seed})`;
  sdpa causal attention; fp32 for-loop experts (`use_grouped_mm = False`, what
  `update_from_config` sets on GPUs without grouped GEMM), `moe_impl = "standard"`.
* Training: local batch {BATCH_SIZE} × {SEQ_LEN} tokens, `cross_entropy_loss` sum / valid tokens,
  `clip_grad_norm_` (max_norm {MAX_NORM}), `build_optimizers_with_moe_load_balancing`
  ({OPTIMIZER['name']}, lr {OPTIMIZER['lr']}, betas {OPTIMIZER['beta1']}/{OPTIMIZER['beta2']}, weight decay
  {OPTIMIZER['weight_decay']}, eps {OPTIMIZER['eps']}; its pre-step hook moves each layer's expert_bias by
  ±coeff towards balance), `build_lr_schedulers` (linear warmup {LR_SCHEDULER['warmup_steps']} steps, then
  {LR_SCHEDULER['decay_type']} decay to {LR_SCHEDULER['min_lr_factor']} × lr), fp32 weights, 2 CPU threads,
  one gloo process.
* Saves: TorchTitan's `CheckpointManager.save(step, last_step=True)` with
  `last_save_model_only = true`, `export_dtype = "bfloat16"` at steps {early} and {final}, written
  under `./outputs/checkpoint/step-N` in a scratch folder (so `.metadata` records that path, as a
  real run's does) and moved here.
* The CPU patch of tools/reference/README.md applies (`torch.histc` on integer expert ids is
  counted in float32, exact for these counts).
* Determinism: same seed, thread count and library versions give the same weights (two full runs
  of this command gave identical tensors and reference files; `--heldout-every` evaluates a copy
  and does not change them); the `.metadata` and `.distcp` files still differ between runs in the
  random ids torch writes (DCP `save_id`, torch.save `serialization_id`).

## Losses

Training loss (cross-entropy per token, nats; ln {MODEL_ARGS['vocab_size']} = {__import__('math').log(MODEL_ARGS['vocab_size']):.3f}):

{_loss_table(losses, lrs, shown)}

Held-out loss (all {n_windows} full {SEQ_LEN + 1}-token windows of the held-out paragraphs, fp32 forward of
the stored bf16 weights):

| checkpoint | held-out loss | perplexity |
|---|---:|---:|
| step-{early} | {evaluations[early]['heldout_loss']:.4f} | {__import__('math').exp(evaluations[early]['heldout_loss']):.1f} |
| step-{final} | {evaluations[final]['heldout_loss']:.4f} | {__import__('math').exp(evaluations[final]['heldout_loss']):.1f} |
{live}
## Routing on the held-out text

Top-{moe['top_k']} assignments per routed expert (TorchTitan's own `tokens_per_expert` counters),
their coefficient of variation, the busiest expert's load over the mean, and the range of
`expert_bias`:

| checkpoint | layer | assignments per expert | CV | max / mean | expert_bias |
|---|---|---|---:|---:|---|
{chr(10).join(load_rows)}
"""


if __name__ == "__main__":
    sys.exit(main())
