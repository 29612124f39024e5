"""TorchTitan 0.2.2 (Era A) side of the fixture generator and checker.

Imported only in a process whose PYTHONPATH selects the torchtitan 0.2.2 target folder.
"""

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.utils.data import IterableDataset

import torchtitan.distributed.parallel_dims as tt_parallel_dims
from torchtitan.components.checkpoint import CheckpointManager
from torchtitan.components.dataloader import ParallelAwareDataloader
from torchtitan.components.loss import cross_entropy_loss
from torchtitan.components.lr_scheduler import build_lr_schedulers
from torchtitan.components.optimizer import build_optimizers_with_moe_load_balancing
from torchtitan.config import JobConfig
from torchtitan.distributed import ParallelDims
from torchtitan.distributed import utils as dist_utils
from torchtitan.models.deepseek_v3.model.args import DeepSeekV3ModelArgs
from torchtitan.models.deepseek_v3.model.model import DeepSeekV3Model
from torchtitan.models.deepseek_v3.model.state_dict_adapter import DeepSeekV3StateDictAdapter
from torchtitan.models.llama4.infra.parallelize import apply_fsdp
from torchtitan.models.moe import MoEArgs

import tt_common

ERA = "A"
SAVE_STEP = 10
TRAIN_STEPS = 2


def model_args(variant: dict) -> DeepSeekV3ModelArgs:
    spec = tt_common.full_model_args(variant)
    moe = dict(spec.pop("moe_args"))
    # What update_from_config does on a GPU without SM90 grouped GEMM: experts run
    # through the fp32 for-loop path instead of bf16 torch._grouped_mm.
    moe_args = MoEArgs(**moe, use_grouped_mm=False)
    args = DeepSeekV3ModelArgs(**spec, moe_args=moe_args, attn_type="sdpa", attn_mask_type="causal")
    # Normally set by update_from_config from parallelism.expert_parallel_comm_backend.
    args.moe_impl = "standard"
    return args


def build_model(variant: dict, init_seed: int) -> DeepSeekV3Model:
    torch.manual_seed(init_seed)
    model = DeepSeekV3Model(model_args(variant))
    with torch.no_grad():
        model.init_weights()
    return model


def module_numerics(model: DeepSeekV3Model) -> dict:
    args = model.model_args
    final_eps = model.norm.eps if model.norm.eps is not None else torch.finfo(torch.float32).eps
    return {
        "softmax_scale": float(model.layers["0"].attention.softmax_scale),
        "final_norm_eps": float(final_eps),
        "yarn_active": bool(args.max_seq_len > args.original_seq_len),
    }


@torch.no_grad()
def reference_forward(model: DeepSeekV3Model, tokens: torch.Tensor):
    model.eval()
    capture = tt_common.RouterCapture(model, ERA)
    try:
        logits = model(tokens)
        routing, margin = capture.finish()
    finally:
        capture.remove()
    return logits.to(torch.float32), routing, margin


# --------------------------------------------------------------------------- checkpoints

def _job_config(folder: str = "checkpoint") -> JobConfig:
    job = JobConfig()
    job.checkpoint.enable = True
    job.checkpoint.folder = folder
    job.checkpoint.async_mode = "disabled"
    job.checkpoint.keep_latest_k = 0
    return job


def save_model_only(model: DeepSeekV3Model, work_dir: Path, export_dtype: str) -> Path:
    """The last-step model-only save (checkpoint.last_save_model_only=true)."""
    job = _job_config()
    job.checkpoint.last_save_model_only = True
    job.checkpoint.export_dtype = export_dtype
    previous = os.getcwd()
    os.chdir(work_dir)
    try:
        manager = CheckpointManager(
            dataloader=None, model_parts=[model], optimizers=None, lr_schedulers=None, states={},
            checkpoint_config=job.checkpoint, sd_adapter=None, base_folder="./outputs",
        )
        manager.save(curr_step=SAVE_STEP, last_step=True)
        manager.close()
    finally:
        os.chdir(previous)
    return work_dir / "outputs" / "checkpoint" / f"step-{SAVE_STEP}"


def write_hf_copy(model: DeepSeekV3Model, hf_dir: Path) -> None:
    """HF safetensors copy via torchtitan's own adapter, split into 2 shards."""
    import json
    from safetensors.torch import save_file

    adapter = DeepSeekV3StateDictAdapter(model.model_args, None)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    hf_state = adapter.to_hf(state)
    keys = list(hf_state.keys())

    def sort_key(key):
        parts = key.split(".")
        layer = int(parts[2]) if key.startswith("model.layers.") else (-1 if "embed" in key else 10**6)
        return (layer, key)

    keys.sort(key=sort_key)
    total = sum(hf_state[k].numel() * hf_state[k].element_size() for k in keys)
    shard_of = {}
    running = 0
    for key in keys:
        shard_of[key] = 1 if running < total / 2 else 2
        running += hf_state[key].numel() * hf_state[key].element_size()
    hf_dir.mkdir(parents=True, exist_ok=True)
    names = {1: "model-00001-of-00002.safetensors", 2: "model-00002-of-00002.safetensors"}
    for shard, filename in names.items():
        tensors = {k: hf_state[k].contiguous() for k in keys if shard_of[k] == shard}
        save_file(tensors, str(hf_dir / filename), metadata={"format": "pt"})
    index = {
        "metadata": {"total_size": total},
        "weight_map": {k: names[shard_of[k]] for k in sorted(keys)},
    }
    (hf_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


# --------------------------------------------------------------------------- two processes

def _use_cpu_meshes() -> None:
    # ParallelDims builds its meshes on torchtitan's detected accelerator type,
    # which falls back to "cuda" on a CPU-only machine; gloo meshes need "cpu".
    tt_parallel_dims.device_type = "cpu"


def _fsdp_rank(rank: int, world_size: int, variant: dict, weights_path: str, work_dir: str,
               tokens_path: str, port: int) -> None:
    tt_common.apply_cpu_patches()
    _use_cpu_meshes()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        model = DeepSeekV3Model(model_args(variant))
        model.load_state_dict(torch.load(weights_path, weights_only=True))
        parallel_dims = ParallelDims(dp_replicate=1, dp_shard=world_size, cp=1, tp=1, pp=1, ep=1, etp=1,
                                     world_size=world_size)
        dp_mesh = parallel_dims.get_mesh("fsdp")
        apply_fsdp(model, dp_mesh, param_dtype=torch.float32, reduce_dtype=torch.float32, pp_enabled=False)
        saved = torch.load(tokens_path, weights_only=True)
        with torch.no_grad():
            model.eval()
            sharded_logits = model(saved["tokens"])
        if rank == 0:
            delta = (sharded_logits - saved["logits"]).abs().max().item()
            print(f"  FSDP-sharded forward vs unsharded reference: max |dlogit| = {delta:.3g}", flush=True)
            if delta > 1e-5:
                raise RuntimeError("FSDP forward disagrees with the unsharded reference")
        save_model_only(model, Path(work_dir), "float32")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def save_two_process(model: DeepSeekV3Model, variant: dict, work_dir: Path, tokens: torch.Tensor,
                     logits: torch.Tensor) -> Path:
    import socket

    import torch.multiprocessing as mp

    weights_path = work_dir / "weights.pt"
    tokens_path = work_dir / "tokens.pt"
    torch.save(model.state_dict(), weights_path)
    torch.save({"tokens": tokens, "logits": logits}, tokens_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp_rank, args=(2, variant, str(weights_path), str(work_dir), str(tokens_path), port),
             nprocs=2, join=True)
    weights_path.unlink()
    tokens_path.unlink()
    return work_dir / "outputs" / "checkpoint" / f"step-{SAVE_STEP}"


# --------------------------------------------------------------------------- full training

class _TokenWindows(IterableDataset):
    """Stand-in for torchtitan's text dataset: yields ({"input": x}, y) windows of
    seq_len + 1 tokens and keeps the same state_dict keys."""

    def __init__(self, token_stream: list[int], seq_len: int):
        self._stream = token_stream
        self._seq_len = seq_len
        self._sample_idx = 0
        self._token_buffer: list[int] = []

    def __iter__(self):
        window = self._seq_len + 1
        while self._sample_idx * window + window <= len(self._stream):
            start = self._sample_idx * window
            x = torch.LongTensor(self._stream[start:start + window])
            self._sample_idx += 1
            yield {"input": x[:-1]}, x[1:]

    def state_dict(self):
        return {"token_buffer": self._token_buffer, "sample_idx": self._sample_idx}

    def load_state_dict(self, state_dict):
        self._token_buffer = state_dict["token_buffer"]
        self._sample_idx = state_dict["sample_idx"]


class _TrainState:
    """The two entries torchtitan's Trainer.state_dict() checkpoints as train_state."""

    def __init__(self):
        self.step = 0
        self.ntokens_seen = 0

    def state_dict(self):
        return {"step": self.step, "ntokens_seen": self.ntokens_seen}

    def load_state_dict(self, state_dict):
        self.step = state_dict["step"]
        self.ntokens_seen = state_dict["ntokens_seen"]


def _training_job_config() -> JobConfig:
    # Values from torchtitan's deepseek_v3 debug_model.toml where they apply.
    job = _job_config()
    job.optimizer.name = "AdamW"
    job.optimizer.lr = 8e-4
    job.optimizer.eps = 1e-8
    job.optimizer.implementation = "for-loop"
    job.lr_scheduler.warmup_steps = 2
    job.lr_scheduler.decay_ratio = 0.8
    job.lr_scheduler.decay_type = "linear"
    job.lr_scheduler.min_lr_factor = 0.0
    job.training.steps = 10
    job.training.max_norm = 1.0
    job.checkpoint.interval = TRAIN_STEPS
    job.checkpoint.last_save_model_only = False
    return job


class TrainingRun:
    """Two real optimizer steps with torchtitan's optimizer/scheduler/loss, then an
    interval save by CheckpointManager (a full checkpoint)."""

    def __init__(self, model: DeepSeekV3Model, generator: torch.Generator, seq_len: int, vocab_size: int):
        _use_cpu_meshes()
        if not dist.is_initialized():
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        self.model = model
        self.job = _training_job_config()
        self.parallel_dims = ParallelDims(dp_replicate=1, dp_shard=1, cp=1, tp=1, pp=1, ep=1, etp=1, world_size=1)
        self.optimizers = build_optimizers_with_moe_load_balancing(
            model_parts=[model], optimizer_config=self.job.optimizer, parallel_dims=self.parallel_dims)
        self.lr_schedulers = build_lr_schedulers(self.optimizers, self.job.lr_scheduler, self.job.training.steps)
        batch = 2
        stream = torch.randint(0, vocab_size, ((TRAIN_STEPS + 2) * batch * (seq_len + 1),),
                               generator=generator).tolist()
        self.dataloader = ParallelAwareDataloader(_TokenWindows(stream, seq_len), dp_rank=0, dp_world_size=1,
                                                  batch_size=batch)
        self.train_state = _TrainState()

    def train(self) -> list[float]:
        losses = []
        data = iter(self.dataloader)
        self.model.train()
        for _ in range(TRAIN_STEPS):
            self.train_state.step += 1
            self.optimizers.zero_grad()
            input_dict, labels = next(data)
            global_valid_tokens = (labels != -100).sum().float()
            pred = self.model(input_dict["input"])
            loss = cross_entropy_loss(pred, labels) / global_valid_tokens
            del pred
            loss.backward()
            dist_utils.clip_grad_norm_([p for p in self.model.parameters()], self.job.training.max_norm,
                                       foreach=True, pp_mesh=None, ep_enabled=False)
            self.optimizers.step()
            self.lr_schedulers.step()
            self.train_state.ntokens_seen += labels.numel()
            losses.append(loss.item())
        self.model.eval()
        return losses

    def save(self, work_dir: Path) -> Path:
        previous = os.getcwd()
        os.chdir(work_dir)
        try:
            manager = CheckpointManager(
                dataloader=self.dataloader, model_parts=[self.model], optimizers=self.optimizers,
                lr_schedulers=self.lr_schedulers, states={"train_state": self.train_state},
                checkpoint_config=self.job.checkpoint, sd_adapter=None, base_folder="./outputs",
            )
            manager.save(curr_step=self.train_state.step, last_step=False)
            manager.close()
        finally:
            os.chdir(previous)
        return work_dir / "outputs" / "checkpoint" / f"step-{self.train_state.step}"

    def close(self):
        if dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------- loading (checker)

def load_checkpoint_into_fresh_model(variant: dict, checkpoint: Path) -> DeepSeekV3Model:
    """What torchtitan does for a model-only load: dcp.load into the model's own
    state dict (fp32), then load_state_dict. Non-model entries are simply not requested."""
    model = build_model(variant, init_seed=0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    state = model.state_dict()
    dcp.load(state, checkpoint_id=str(checkpoint))
    model.load_state_dict(state)
    return model


def hf_round_trip(variant: dict, hf_dir: Path, model: DeepSeekV3Model) -> float:
    """Max |difference| between hf/ (read back through the adapter's from_hf) and the model."""
    import json
    from safetensors.torch import load_file

    index = json.loads((hf_dir / "model.safetensors.index.json").read_text())
    hf_state = {}
    for filename in sorted(set(index["weight_map"].values())):
        hf_state.update(load_file(str(hf_dir / filename)))
    if set(hf_state) != set(index["weight_map"]):
        raise RuntimeError("hf index weight_map does not match the shard contents")
    adapter = DeepSeekV3StateDictAdapter(model.model_args, None)
    restored = adapter.from_hf(hf_state)
    reference = model.state_dict()
    if set(restored) != set(reference):
        raise RuntimeError(f"hf keys map to {sorted(set(restored) ^ set(reference))} mismatching the model")
    return max((restored[k].to(torch.float32) - reference[k].to(torch.float32)).abs().max().item()
               for k in reference)
