#!/usr/bin/env python3
"""Builds the MoECheckpoint unit-test fixtures with the real upstream libraries (dev only).

Everything the Swift tests compare against comes from here: files written by
torch.distributed.checkpoint, torch.save, the `safetensors` library, TorchTitan's own model code
(key names, shapes) and its DeepSeekV3StateDictAdapter (HF names, expert split), plus
`expected.json` with the exact tensor bytes and listings torch reports.

Usage (from the repo root; needs the reference venv described in tools/reference):
    ${MOE_EVAL_VENV:-.venv-ref}/bin/python tools/reference/make_checkpoint_unit_fixtures.py \
        [--out Tests/MoECheckpointTests/Fixtures] [--seed 0] [--tt022 PATH] [--tt030 PATH]

The TorchTitan stages run in subprocesses because torchtitan 0.2.2 and 0.3.0 share a package name.
"""
import argparse
import base64
import collections
import json
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import zipfile

FIXTURE_ITEMS = [
    "pickles", "dcp_dtypes", "dcp_sharded", "dcp_tt_v02", "dcp_tt_v03", "torchsave",
    "st_dtypes.safetensors", "hf_single", "hf_sharded", "bad_metadata", "expected.json",
]


# ---------------------------------------------------------------------------------------------
# helpers

def tensor_record(t):
    """dtype, shape and the exact little-endian contiguous bytes (base64) of a tensor."""
    import torch
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        raw = t.view(torch.int16).numpy().tobytes()
    else:
        raw = t.numpy().tobytes()
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
            "data": base64.b64encode(raw).decode("ascii")}


def tag(value):
    """A JSON form of a plain pickled value that keeps every distinction the Swift reader makes."""
    if value is None:
        return ["none"]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, float):
        return ["float", struct.pack("<d", value).hex()]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, (bytes, bytearray)):
        return ["bytes", bytes(value).hex()]
    if isinstance(value, tuple):
        return ["tuple", [tag(v) for v in value]]
    if isinstance(value, list):
        return ["list", [tag(v) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[tag(k), tag(v)] for k, v in value.items()]]
    if isinstance(value, frozenset):
        return ["frozenset", [tag(v) for v in value]]
    if isinstance(value, set):
        return ["set", [tag(v) for v in value]]
    raise TypeError(type(value))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# pickles (plain Python pickle; a few handcrafted byte streams for refused globals)

def make_pickles(out, expected):
    import torch
    folder = os.path.join(out, "pickles")
    os.makedirs(folder)
    basic = {
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, 2**63 - 1, -2**63,
                 2**64, -2**70, 10**30, -(10**40) - 7],
        "floats": [0.0, -1.5, 1e300, 5e-324, float("inf"), float("-inf"), 0.1],
        "strings": ["", "a", "héllo ✓ 𝄞", "x" * 300, "line\nbreak \\ 'quote' \"dq\""],
        "bools": [True, False],
        "none": None,
        "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
        "nested": [[1, [2, {"a": (3,)}]], {}],
        3: "int key",
    }
    shared_list = [1, 2]
    shared = {"x": shared_list, "y": shared_list, "z": (shared_list, shared_list)}
    many = [f"s{i}" for i in range(300)]
    memo_heavy = {"first": many, "again": many, "items": [(s, s) for s in many[:50]]}
    cases = []
    for protocol in range(6):
        cases.append(("basic", protocol, basic))
        cases.append(("shared", protocol, shared))
    for protocol in (3, 4, 5):
        cases.append(("bytes", protocol, {"b": b"\x00\xff\x10", "long": b"y" * 300, "empty": b""}))
    for protocol in (4, 5):
        cases.append(("sets", protocol, {"s": {1, 2, 3}, "fs": frozenset({"a", "b"}), "e": set()}))
    cases.append(("bytearray", 5, {"ba": bytearray(b"abc")}))
    for protocol in (2, 4):
        cases.append(("ordereddict", protocol, collections.OrderedDict([("b", 1), ("a", [2.5])])))
        cases.append(("memo", protocol, memo_heavy))
    records = []
    for name, protocol, value in cases:
        file = f"{name}_p{protocol}.pkl"
        with open(os.path.join(folder, file), "wb") as f:
            pickle.dump(value, f, protocol=protocol)
        records.append({"file": file, "protocol": protocol, "value": tag(value)})

    # Several FRAMEs (protocol 4 frames hold 64 KiB): checked as a count rather than spelled out.
    with open(os.path.join(folder, "frames_p4.pkl"), "wb") as f:
        pickle.dump(list(range(30000)), f, protocol=4)
    # Allowlisted torch globals, pickled by torch itself.
    objects = []
    for protocol in (2, 4):
        file = f"torch_objects_p{protocol}.pkl"
        with open(os.path.join(folder, file), "wb") as f:
            pickle.dump({"size": torch.Size([2, 3]), "dtype": torch.bfloat16, "empty": torch.Size([])}, f,
                        protocol=protocol)
        objects.append(file)

    # Refused globals: byte streams written opcode by opcode, never unpickled here.
    refused = {
        "os_system_p0.pkl": (b"cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
        "builtins_eval_p4.pkl": (b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval"
                                 b"\x94\x93\x94\x8c\x031+1\x94\x85\x94R\x94.", "builtins.eval"),
        "torch_load_p2.pkl": (b"\x80\x02ctorch\nload\nq\x00X\x01\x00\x00\x00xq\x01\x85q\x02Rq\x03.", "torch.load"),
    }
    for file, (raw, _) in refused.items():
        with open(os.path.join(folder, file), "wb") as f:
            f.write(raw)
    expected["pickles"] = {
        "cases": records,
        "frames": {"file": "frames_p4.pkl", "range": 30000},
        "torch_objects": objects,
        "refused": {file: name for file, (_, name) in refused.items()},
    }


# ---------------------------------------------------------------------------------------------
# DCP, single process: dtypes, scalar, empty, non-contiguous, optimizer-like and bytes entries

def make_dcp_dtypes(out, expected, seed):
    import torch
    import torch.distributed.checkpoint as dcp
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "f32": torch.randn(3, 4, generator=g),
        "bf16": torch.randn(2, 3, 4, generator=g).to(torch.bfloat16),
        "f16": torch.randn(5, generator=g).to(torch.float16),
        "f64": torch.randn(2, 2, generator=g, dtype=torch.float64),
        "i64": torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
        "i32": torch.tensor([1, -2, 2**31 - 1], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "flags": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        # A transposed tensor keeps its strides (storage is not larger than the data, so DCP does not clone).
        "transposed": torch.arange(15, dtype=torch.float32).reshape(3, 5).t(),
    }
    state = dict(tensors)
    state["optimizer"] = {"state": {"f32": {"exp_avg": torch.randn(3, 4, generator=g), "step": torch.tensor(3.0)}},
                          "param_groups": [{"lr": 0.001, "params": ["f32"]}]}
    state["lr_scheduler"] = {"last_epoch": 3, "base_lrs": [0.001]}
    state["dataloader"] = {"dp_rank_0": b"\x01\x02\x03"}
    state["train_state"] = {"step": 3, "ntokens_seen": 96}
    state["extra_note"] = "a non-tensor value at top level"
    folder = os.path.join(out, "dcp_dtypes")
    dcp.save(state, checkpoint_id=folder)
    expected["dcp"]["dcp_dtypes"] = describe_dcp(folder)
    expected["tensors"]["dcp_dtypes"] = {k: tensor_record(v) for k, v in tensors.items()}


def describe_dcp(folder):
    """The entries as torch's own metadata lists them."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    md = FileSystemReader(folder).read_metadata()
    entries = {}
    for name, item in md.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            entries[name] = {"kind": "tensor", "dtype": str(item.properties.dtype).replace("torch.", ""),
                             "shape": list(item.size), "chunks": len(item.chunks)}
        else:
            entries[name] = {"kind": "bytes"}
    files = sorted({info.relative_path for info in md.storage_data.values()})
    chunks = {}
    for index, info in md.storage_data.items():
        if index.offset is not None:
            chunks.setdefault(index.fqn, []).append({"offsets": list(index.offset), "file": info.relative_path,
                                                     "offset": info.offset, "length": info.length})
    return {"entries": entries, "files": files, "storage": chunks, "version": md.version}


# ---------------------------------------------------------------------------------------------
# DCP, two gloo processes with DTensors: uneven Shard(0) with a zero-size chunk, Shard(1), Replicate

def sharded_tensors(seed):
    import torch
    g = torch.Generator().manual_seed(seed + 1)
    return {
        "rows5": (torch.randn(5, 4, generator=g), "shard0"),
        "row1": (torch.randn(1, 4, generator=g), "shard0"),        # rank 1 gets a [0, 4] chunk
        "cols": (torch.randn(3, 5, generator=g), "shard1"),
        "experts_bf16": (torch.randn(4, 2, 3, generator=g).to(torch.bfloat16), "shard0"),
        "replicated": (torch.randn(2, 2, generator=g), "replicate"),
        "plain_i64": (torch.arange(6, dtype=torch.int64), "plain"),
    }


def sharded_worker(rank, world, folder, port, seed):
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    placements = {"shard0": [Shard(0)], "shard1": [Shard(1)], "replicate": [Replicate()]}
    state = {}
    for name, (t, how) in sharded_tensors(seed).items():
        state[name] = t if how == "plain" else distribute_tensor(t, mesh, placements[how])
    dcp.save(state, checkpoint_id=folder)
    dist.barrier()
    dist.destroy_process_group()


def make_dcp_sharded(out, expected, seed):
    import torch.multiprocessing as mp
    folder = os.path.join(out, "dcp_sharded")
    mp.spawn(sharded_worker, args=(2, folder, free_port(), seed), nprocs=2, join=True)
    expected["dcp"]["dcp_sharded"] = describe_dcp(folder)
    expected["tensors"]["dcp_sharded"] = {k: tensor_record(t) for k, (t, _) in sharded_tensors(seed).items()}


# ---------------------------------------------------------------------------------------------
# torch.save files

def make_torchsave(out, expected, seed):
    import torch
    g = torch.Generator().manual_seed(seed + 2)
    folder = os.path.join(out, "torchsave")
    os.makedirs(folder)
    base_bf16 = torch.randn(10, generator=g).to(torch.bfloat16)
    items = {
        "f32.pt": torch.randn(2, 3, generator=g),
        "bf16_offset.pt": base_bf16[3:7],                     # storage_offset 3 into a 10-element storage
        "transposed.pt": torch.randn(3, 4, generator=g).t(),  # strides (1, 4)
        "i64.pt": torch.arange(5, dtype=torch.int64),
    }
    records = {}
    for file, t in items.items():
        torch.save(t, os.path.join(folder, file))
        records[file] = tensor_record(t)
    torch.save(torch.randn(2, generator=g, dtype=torch.complex64), os.path.join(folder, "complex.pt"))
    torch.save(10, os.path.join(folder, "int_value.pt"))

    # The same archive re-zipped by Python's zipfile with zip64 records forced everywhere.
    with zipfile.ZipFile(os.path.join(folder, "f32.pt")) as src:
        names = src.namelist()
        payloads = [(n, src.read(n)) for n in names]
    saved_limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 0
    try:
        with zipfile.ZipFile(os.path.join(folder, "f32_zip64.pt"), "w", compression=zipfile.ZIP_STORED) as dst:
            for n, data in payloads:
                dst.writestr(zipfile.ZipInfo(n), data)
    finally:
        zipfile.ZIP64_LIMIT = saved_limit
    loaded = torch.load(os.path.join(folder, "f32_zip64.pt"), weights_only=True)
    assert torch.equal(loaded, items["f32.pt"]), "torch cannot read the zip64 copy"
    with open(os.path.join(folder, "f32_zip64.pt"), "rb") as f:
        assert b"PK\x06\x06" in f.read(), "zip64 end record missing"
    records["f32_zip64.pt"] = records["f32.pt"]
    expected["tensors"]["torchsave"] = records
    expected["torchsave"] = {"unknown_dtype": {"complex.pt": "ComplexFloatStorage"}, "int_value.pt": 10}


# ---------------------------------------------------------------------------------------------
# safetensors written by the safetensors library

def make_safetensors_dtypes(out, expected, seed):
    import torch
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(seed + 3)
    tensors = {
        "f64": torch.randn(3, generator=g, dtype=torch.float64),
        "f32": torch.randn(2, 3, generator=g),
        "f16": torch.randn(4, generator=g).to(torch.float16),
        "bf16": torch.randn(3, 2, generator=g).to(torch.bfloat16),
        "i64": torch.tensor([-5, 2**40], dtype=torch.int64),
        "i32": torch.tensor([7, -7, 9], dtype=torch.int32),
        "i16": torch.tensor([-1, 1], dtype=torch.int16),
        "i8": torch.tensor([-3], dtype=torch.int8),
        "u8": torch.tensor([1, 2, 3, 250], dtype=torch.uint8),
        "flags": torch.tensor([False, True]),
        "empty": torch.zeros(0, 2),
        "scalar": torch.tensor(1.25),
    }
    metadata = {"format": "pt", "note": "unit \"fixture\""}
    save_file(tensors, os.path.join(out, "st_dtypes.safetensors"), metadata=metadata)
    expected["tensors"]["st_dtypes.safetensors"] = {k: tensor_record(v) for k, v in tensors.items()}
    expected["safetensors_metadata"] = metadata


# ---------------------------------------------------------------------------------------------
# TorchTitan-shaped checkpoints (run with torchtitan 0.2.2 or 0.3.0 on PYTHONPATH)

TINY = dict(vocab=32, dim=16, dense_hidden=24, moe_hidden=8, layers=2, dense_layers=1, heads=2,
            experts=4, shared=1, kv_lora=8, nope=4, rope=4, v=4)


def tt_model_v022(q_lora_rank):
    import torch
    from torchtitan.models.deepseek_v3.model.args import DeepSeekV3ModelArgs
    from torchtitan.models.deepseek_v3.model.model import DeepSeekV3Model
    from torchtitan.models.deepseek_v3.model.state_dict_adapter import DeepSeekV3StateDictAdapter
    from torchtitan.models.moe import MoEArgs
    t = TINY
    args = DeepSeekV3ModelArgs(
        vocab_size=t["vocab"], dim=t["dim"], inter_dim=t["dense_hidden"], moe_inter_dim=t["moe_hidden"],
        n_layers=t["layers"], n_dense_layers=t["dense_layers"], n_heads=t["heads"],
        moe_args=MoEArgs(num_experts=t["experts"], num_shared_experts=t["shared"], top_k=2, score_func="softmax",
                         route_norm=False, route_scale=1.0, load_balance_coeff=1e-3),
        q_lora_rank=q_lora_rank, kv_lora_rank=t["kv_lora"], qk_nope_head_dim=t["nope"],
        qk_rope_head_dim=t["rope"], v_head_dim=t["v"], max_seq_len=32)
    args.moe_impl = "standard"
    args.moe_args.use_grouped_mm = False
    with torch.device("meta"):
        model = DeepSeekV3Model(args)
    return model, DeepSeekV3StateDictAdapter(args, None)


def tt_model_v030(q_lora_rank):
    import torch
    import torchtitan.models.deepseek_v3 as ds
    from torchtitan.models.common import Embedding, Linear, RMSNorm
    from torchtitan.models.common.rope import ComplexRoPE
    t = TINY
    layers = ds._build_dsv3_layers(
        n_layers=t["layers"], n_dense_layers=t["dense_layers"], dim=t["dim"], n_heads=t["heads"],
        q_lora_rank=q_lora_rank, kv_lora_rank=t["kv_lora"], qk_nope_head_dim=t["nope"], qk_rope_head_dim=t["rope"],
        v_head_dim=t["v"], mscale=0.7, dense_hidden_dim=t["dense_hidden"], moe_hidden_dim=t["moe_hidden"],
        num_experts=t["experts"], num_shared_experts=t["shared"], router_top_k=2, router_score_func="softmax",
        attn_backend="flex", moe_comm_backend="standard", non_blocking_capacity_factor=None,
        rope=ComplexRoPE.Config(dim=t["rope"], max_seq_len=32, theta=10000.0, scaling="yarn", rope_factor=40.0,
                                beta_fast=32.0, beta_slow=1.0, original_seq_len=16))
    config = ds.DeepSeekV3Model.Config(
        vocab_size=t["vocab"], dim=t["dim"],
        tok_embeddings=Embedding.Config(num_embeddings=t["vocab"], embedding_dim=t["dim"]),
        norm=RMSNorm.Config(normalized_shape=t["dim"]),
        lm_head=Linear.Config(in_features=t["dim"], out_features=t["vocab"]),
        layers=layers, mtp_layers=ds._build_mtp_layers(layers[-1], dim=t["dim"], num_mtp_layers=0))
    with torch.device("meta"):
        model = config.build()
    return model, ds.DeepSeekV3StateDictAdapter(config, None)


def random_state(model, seed, dtype):
    """Every persistent tensor of the model (TorchTitan's own key names and shapes), random values."""
    import torch
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g).to(dtype) for k, v in model.state_dict().items()}


def stage_torchtitan(era, out, seed, part_path):
    import torch
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import save_file
    result = {"tensors": {}, "dcp": {}, "hf_names": {}, "naming": {}}
    if era == "v02":
        model, adapter = tt_model_v022(q_lora_rank=0)
        state = random_state(model, seed + 10, torch.float32)
        folder = os.path.join(out, "dcp_tt_v02")
        training = dict(state)
        # Training-state entries as TorchTitan's CheckpointManager flattens them (tiny: two params only).
        training["optimizer"] = {
            "state": {k: {"exp_avg": torch.zeros_like(state[k]), "exp_avg_sq": torch.ones_like(state[k]),
                          "step": torch.tensor(1.0)} for k in ["tok_embeddings.weight", "norm.weight"]},
            "param_groups": {"tok_embeddings.weight": {"lr": 8e-4, "betas": [0.9, 0.95]}},
        }
        training["lr_scheduler"] = {"last_epoch": 1, "base_lrs": [8e-4], "_step_count": 2}
        training["dataloader"] = {"dp_rank_0": b"\x80\x04K\x01.", "world_size": 1}
        training["train_state"] = {"step": 1, "ntokens_seen": 64}
        dcp.save(training, checkpoint_id=folder)
        hf_folder = os.path.join(out, "hf_single")
        os.makedirs(hf_folder)
        hf = {k: v.contiguous() for k, v in adapter.to_hf(state).items()}
        save_file(hf, os.path.join(hf_folder, "model.safetensors"), metadata={"format": "pt"})
        result["naming"]["dcp_tt_v02"] = {"torchtitan": "0.2.2", "era": "v0_2"}
        result["hf_names"]["hf_single"] = hf_name_map(adapter, state)
        # The adapter's own HF → v0.2.x templates, for both attention variants.
        templates = dict(adapter.from_hf_map)
        templates.update(tt_model_v022(q_lora_rank=8)[1].from_hf_map)
        result["from_hf_map_v022"] = templates
        name = "dcp_tt_v02"
    else:
        model, adapter = tt_model_v030(q_lora_rank=8)
        # As an export_dtype=bfloat16 model-only save writes it.
        state = random_state(model, seed + 20, torch.bfloat16)
        folder = os.path.join(out, "dcp_tt_v03")
        dcp.save(dict(state), checkpoint_id=folder)
        hf_folder = os.path.join(out, "hf_sharded")
        os.makedirs(hf_folder)
        hf = {k: v.contiguous() for k, v in adapter.to_hf(state).items()}
        names = sorted(hf)
        shards = [names[: len(names) // 2], names[len(names) // 2:]]
        weight_map = {}
        total = 0
        for i, shard in enumerate(shards):
            file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file({k: hf[k] for k in shard}, os.path.join(hf_folder, file), metadata={"format": "pt"})
            for k in shard:
                weight_map[k] = file
                total += hf[k].numel() * hf[k].element_size()
        with open(os.path.join(hf_folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        result["naming"]["dcp_tt_v03"] = {"torchtitan": "0.3.0", "era": "v0_3"}
        result["hf_names"]["hf_sharded"] = hf_name_map(adapter, state)
        name = "dcp_tt_v03"
    result["dcp"][name] = describe_dcp(folder)
    # Keyed by the name in the checkpoint; the HF fixtures hold the same values.
    result["tensors"][name] = {k: tensor_record(v) for k, v in state.items()}
    with open(part_path, "w") as f:
        json.dump(result, f)


def hf_name_map(adapter, state):
    """HF key → [TorchTitan key, expert index or -1], from the adapter's own to_hf on each key alone."""
    import torch
    mapping = {}
    for key, value in state.items():
        for hf_key in adapter.to_hf({key: value}):
            expert = -1
            if ".mlp.experts." in hf_key:
                expert = int(hf_key.split(".mlp.experts.")[1].split(".")[0])
            mapping[hf_key] = [key, expert]
    return mapping


# ---------------------------------------------------------------------------------------------
# damaged .metadata files: torch's own Metadata object, altered, pickled as DCP does (protocol 4)

def make_bad_metadata(out, expected):
    import copy
    import subprocess as subprocess_module
    import torch
    from torch.distributed.checkpoint import FileSystemReader
    folder = os.path.join(out, "bad_metadata")
    os.makedirs(folder)
    cases = {}

    def write(name, md, base, tensor, what):
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(md, f, protocol=4)
        cases[name] = {"base": base, "tensor": tensor, "what": what}

    def index_of(md, fqn, position=0):
        return [k for k in md.storage_data if k.fqn == fqn][position]

    dtypes = FileSystemReader(os.path.join(out, "dcp_dtypes")).read_metadata()
    size = os.path.getsize(os.path.join(out, "dcp_dtypes", "__0_0.distcp"))

    md = copy.deepcopy(dtypes)
    md.storage_data[index_of(md, "f32")].offset = size + 10
    write("offset_past_end.metadata", md, "dcp_dtypes", "f32", "past the end")

    md = copy.deepcopy(dtypes)
    md.storage_data[index_of(md, "f32")].length += 1_000_000
    write("length_past_end.metadata", md, "dcp_dtypes", "f32", "past the end")

    md = copy.deepcopy(dtypes)
    md.state_dict_metadata["f32"].properties.dtype = torch.complex64
    write("unknown_dtype.metadata", md, "dcp_dtypes", "f32", "unknown dtype")

    md = copy.deepcopy(dtypes)
    md.planner_data = subprocess_module.call  # pickled by reference as a global; never called
    write("disallowed_global.metadata", md, "dcp_dtypes", None, "subprocess.call")

    sharded = FileSystemReader(os.path.join(out, "dcp_sharded")).read_metadata()
    md = copy.deepcopy(sharded)
    first = md.state_dict_metadata["rows5"].chunks[0]
    md.state_dict_metadata["rows5"].chunks[0] = type(first)(offsets=first.offsets, sizes=torch.Size([4, 4]))
    write("overlapping_chunks.metadata", md, "dcp_sharded", "rows5", "overlap")

    md = copy.deepcopy(sharded)
    del md.state_dict_metadata["rows5"].chunks[1]
    write("missing_chunk.metadata", md, "dcp_sharded", "rows5", "cover")

    md = copy.deepcopy(sharded)
    second = md.state_dict_metadata["rows5"].chunks[1]
    md.state_dict_metadata["rows5"].chunks[1] = type(second)(offsets=second.offsets, sizes=torch.Size([3, 4]))
    write("chunk_outside.metadata", md, "dcp_sharded", "rows5", "outside")
    expected["bad_metadata"] = cases


def v022_name(templates, hf_key):
    """Applies TorchTitan 0.2.2's from_hf_map (templates with {} for numbers) to one HF key."""
    import re
    for hf_template, tt_template in templates.items():
        pattern = "^" + re.escape(hf_template).replace(r"\{\}", r"(\d+)") + "$"
        match = re.match(pattern, hf_key)
        if match:
            return tt_template.format(*match.groups()[: tt_template.count("{}")])
    raise KeyError(hf_key)


# ---------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    parser.add_argument("--out", default=os.path.join(repo, "Tests", "MoECheckpointTests", "Fixtures"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tt022", default="${MOE_EVAL_VENV:-.venv-ref}/tt022", help="folder holding torchtitan 0.2.2")
    parser.add_argument("--tt030", default="${MOE_EVAL_VENV:-.venv-ref}/tt030", help="folder holding torchtitan 0.3.0")
    parser.add_argument("--stage", choices=["v02", "v03"], help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.stage:
        stage_torchtitan(args.stage, args.out, args.seed, args.part)
        return

    os.makedirs(args.out, exist_ok=True)
    for item in FIXTURE_ITEMS:
        path = os.path.join(args.out, item)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    expected = {"seed": args.seed, "tensors": {}, "dcp": {}, "hf_names": {}, "naming": {}}
    make_pickles(args.out, expected)
    make_dcp_dtypes(args.out, expected, args.seed)
    make_dcp_sharded(args.out, expected, args.seed)
    make_torchsave(args.out, expected, args.seed)
    make_safetensors_dtypes(args.out, expected, args.seed)
    make_bad_metadata(args.out, expected)
    for stage, path in (("v02", args.tt022), ("v03", args.tt030)):
        part = os.path.join(args.out, f".part-{stage}.json")
        env = dict(os.environ, PYTHONPATH=path)
        subprocess.run([sys.executable, os.path.abspath(__file__), "--stage", stage, "--out", args.out,
                        "--seed", str(args.seed), "--part", part], env=env, check=True)
        with open(part) as f:
            result = json.load(f)
        os.remove(part)
        for key in ("tensors", "dcp", "hf_names", "naming"):
            expected[key].update(result[key])
        if "from_hf_map_v022" in result:
            expected["from_hf_map_v022"] = result["from_hf_map_v022"]
    # v0.2.x name of every 0.3.0 key, through HF names: 0.3.0 adapter to_hf, then 0.2.2 from_hf_map.
    expected["canonical"] = {"dcp_tt_v03": {
        tt_key: v022_name(expected["from_hf_map_v022"], hf_key)
        for hf_key, (tt_key, _) in expected["hf_names"]["hf_sharded"].items()}}
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"), sort_keys=True)  # compact: the fixture budget
        f.write("\n")
    total = 0
    for root, _, files in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    print(f"fixtures in {args.out}: {total} bytes")


if __name__ == "__main__":
    main()
