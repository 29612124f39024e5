#!/usr/bin/env python3
"""Golden for moe-eval's TorchTitan 0.3.0 config registry (Tests/MoEModelsTests/Fixtures/torchtitan030_registry.json).

TorchTitan 0.3.0's registry modules import torch, so they cannot be imported here. Instead this reads the
registry *source* of the released wheel with Python's `ast` module and evaluates the literal parts of each
`config_registry` function (its model flavor function, `TrainingConfig(seq_len=…)`, `hf_assets_path`, the
dataset, `expert_parallel_degree`, checkpoint folder/interval, dump folder default), then writes the model
arguments under moe-eval's `--model-args` field names. Nothing is transcribed by hand, so the golden checks
moe-eval's hand-written table against TorchTitan's own numbers.

    pip download --no-deps torchtitan==0.3.0 -d /tmp/tt030 && (cd /tmp/tt030 && unzip -qo torchtitan-0.3.0-*.whl)
    python3 tools/reference/torchtitan030_registry.py /tmp/tt030 > Tests/MoEModelsTests/Fixtures/torchtitan030_registry.json

Only what evaluation reads is extracted; a construct the evaluator does not understand is an error, never a guess.
"""
import ast
import json
import sys
from pathlib import Path

# Module → (folder holding __init__.py and config_registry.py, name of the flavor dict, MoE layer builder,
# dense layer builder or None)
MODULES = {
    "deepseek_v3": ("torchtitan/models/deepseek_v3", "deepseekv3_configs", "_build_dsv3_layers", None),
    "kimi_k2_7": ("torchtitan/models/kimi_k2_7", "kimi_k2_5_configs", "_build_kimi_layers", None),
    "qwen3": ("torchtitan/models/qwen3", "qwen3_configs", "_build_qwen3_moe_layers", "_build_qwen3_layers"),
}


class Unsupported(Exception):
    pass


class Call(dict):
    """A call to something outside the evaluated source: its name and keyword arguments."""

    def __init__(self, name, args, kwargs):
        super().__init__(kwargs)
        self.name = name
        self.args = args


class Evaluator:
    def __init__(self, trees):
        self.functions = {}
        self.globals = {}
        for tree in trees:
            for node in tree.body:
                if isinstance(node, ast.FunctionDef):
                    self.functions[node.name] = node
                elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    self.globals[node.targets[0].id] = node.value

    def call(self, name, args, kwargs):
        fn = self.functions[name]
        env = {}
        params = fn.args.args + fn.args.kwonlyargs
        defaults = dict(zip([p.arg for p in fn.args.args][-len(fn.args.defaults):] if fn.args.defaults else [], fn.args.defaults))
        defaults.update({p.arg: d for p, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
        for p, value in zip(fn.args.args, args):
            env[p.arg] = value
        for p in params:
            if p.arg in kwargs:
                env[p.arg] = kwargs[p.arg]
            elif p.arg not in env and p.arg in defaults:
                env[p.arg] = self.eval(defaults[p.arg], {})
        if fn.args.kwarg:
            env[fn.args.kwarg.arg] = {k: v for k, v in kwargs.items() if k not in {p.arg for p in params}}
        for stmt in fn.body:
            if isinstance(stmt, ast.Return):
                return self.eval(stmt.value, env)
            if isinstance(stmt, ast.Assign):
                value = self.eval(stmt.value, env)
                for target in stmt.targets:
                    self.assign(target, value, env)
            # Docstrings, asserts, loops over converters and other statements do not change what is extracted.
        return None

    def assign(self, target, value, env):
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, ast.Attribute):
            owner = self.eval(target.value, env)
            if isinstance(owner, dict):
                owner[target.attr] = value
        else:
            raise Unsupported(ast.dump(target))

    def eval(self, node, env):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in self.globals:
                return self.eval(self.globals[node.id], env)
            return Call(node.id, [], {})
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add, ast.Pow)):
            left, right = self.eval(node.left, env), self.eval(node.right, env)
            if isinstance(left, (int, float)) and isinstance(right, (int, float)):
                return {ast.Mult: lambda: left * right, ast.Add: lambda: left + right, ast.Pow: lambda: left ** right}[type(node.op)]()
            return None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.eval(node.operand, env)
        if isinstance(node, ast.Attribute):
            owner = self.eval(node.value, env)
            if isinstance(owner, dict) and node.attr in owner:
                return owner[node.attr]
            return None
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.eval(e, env) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {self.eval(k, env): v for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Call):
            kwargs = {}
            for kw in node.keywords:
                if kw.arg is None:
                    kwargs.update(self.eval(kw.value, env))
                else:
                    kwargs[kw.arg] = self.eval(kw.value, env)
            args = [self.eval(a, env) for a in node.args]
            name = ast.unparse(node.func)
            if name in self.functions:
                return self.call(name, args, kwargs)
            return Call(name, args, kwargs)
        # Comprehensions, conditionals, lambdas, subscripts: only in parts that are not extracted.
        return None


def model_args(layers_kwargs, model_kwargs):
    """moe-eval's field names from `build_mla_moe_layers` keywords and the model Config's keywords."""
    k = layers_kwargs
    rope = k["rope"]
    yarn = rope.get("scaling", "none") == "yarn"
    return {
        "vocab_size": model_kwargs["vocab_size"],
        "dim": model_kwargs["dim"],
        "inter_dim": k["dense_hidden_dim"],
        "moe_inter_dim": k["moe_hidden_dim"],
        "n_layers": k["n_layers"],
        "n_dense_layers": k["n_dense_layers"],
        "n_heads": k["n_heads"],
        "norm_eps": 1e-5,  # RMSNorm.Config's default; no registry entry sets it
        "q_lora_rank": k["q_lora_rank"],
        "kv_lora_rank": k["kv_lora_rank"],
        "qk_nope_head_dim": k["qk_nope_head_dim"],
        "qk_rope_head_dim": k["qk_rope_head_dim"],
        "v_head_dim": k["v_head_dim"],
        "max_seq_len": rope["max_seq_len"],
        # RoPE.Config defaults where the registry leaves them out (rope_factor 1.0 = no YaRN).
        "original_seq_len": rope.get("original_seq_len", 4096),
        "rope_theta": float(rope.get("theta", 10000.0)),
        "rope_factor": float(rope.get("rope_factor", 1.0)) if yarn else 1.0,
        "beta_fast": float(rope.get("beta_fast", 32.0)),
        "beta_slow": float(rope.get("beta_slow", 1.0)),
        "mscale": float(k.get("mscale", 1.0)),
        "moe_args": {
            "num_experts": k["num_experts"],
            "num_shared_experts": k["num_shared_experts"],
            "top_k": k["router_top_k"],
            "score_func": k["router_score_func"],
            "route_norm": k.get("router_route_norm", False),
            "route_scale": float(k.get("router_route_scale", 1.0)),
            "score_before_experts": False,  # 0.3.0's MoE scales the experts' outputs
            "num_expert_groups": k.get("router_num_expert_groups"),
            "num_limited_groups": k.get("router_num_limited_groups"),
            "gate_bias": False,  # make_router_config(bias=False) is never overridden
            "load_balance_coeff": 1e-3,  # make_moe_config's default
        },
    }


def flavor_args(ev, module, flavor_table, builder, dense_builder, flavor, root):
    """Evaluates one flavor function, capturing its layer builder's keywords."""
    table = ev.eval(ev.globals[flavor_table], {})
    fn_name = ast.unparse(table[flavor])
    captured = {}
    dense = []
    original = ev.functions[builder]

    def fake_call(name, args, kwargs, real=ev.call):
        if name == builder:
            captured.update(kwargs)
            return [{}]
        if name == dense_builder:
            dense.append(kwargs)
            return [{}]
        return real(name, args, kwargs)

    ev.call = fake_call
    try:
        model = ev.call(fn_name, [], {"attn_backend": "flex", "moe_comm_backend": "standard"})
    finally:
        del ev.call
    assert original is ev.functions[builder]
    if "vision_encoder" in model and model["vision_encoder"] is not None:
        return None, "has a vision encoder (multimodal)"
    if dense and not captured:
        return None, "is a dense model (no MoE layers)"
    if module == "qwen3":
        return qwen3_model_args(ev, captured, model, builder, root), None
    return model_args(captured, model), None


def function_defaults(tree, name):
    """Keyword defaults of a module-level function, evaluated as literals."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            names = [a.arg for a in node.args.kwonlyargs]
            return {n: ast.literal_eval(d) for n, d in zip(names, node.args.kw_defaults) if d is not None and isinstance(d, ast.Constant)}
    raise Unsupported(f"no function {name}")


def calls_in(function, name):
    """Literal keywords of every call to `name` inside `function` (loop bodies included)."""
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
            found.append({kw.arg: ast.literal_eval(kw.value) for kw in node.keywords
                          if kw.arg is not None and isinstance(kw.value, ast.Constant)})
    return found


def qwen3_model_args(ev, k, model_kwargs, builder, root):
    """moe-eval's qwen3 field names from `_build_qwen3_moe_layers` keywords, the router/MoE calls inside it
    (with config_utils' defaults) and the model Config's keywords."""
    utils = ast.parse((root / "torchtitan/models/common/config_utils.py").read_text())
    router_defaults = function_defaults(utils, "make_router_config")
    moe_defaults = function_defaults(utils, "make_moe_config")
    routers = calls_in(ev.functions[builder], "make_router_config")
    moes = calls_in(ev.functions[builder], "make_moe_config")
    if len(routers) != 1 or len(moes) != 1:
        raise Unsupported(f"{builder}: expected one router and one MoE config")
    router = {**router_defaults, **routers[0]}
    moe = {**moe_defaults, **moes[0]}
    qk_norm = any(kw.arg == "qk_norm" for node in ast.walk(ev.functions[builder])
                  if isinstance(node, ast.Call) and ast.unparse(node.func) == "make_gqa_config" for kw in node.keywords)
    rope = k["rope"]
    if rope.name != "CosSinRoPE.Config" or rope.get("scaling", "none") != "none":
        raise Unsupported(f"rope {rope.name} {rope.get('scaling')}")
    return {
        "vocab_size": model_kwargs["vocab_size"],
        "dim": model_kwargs["dim"],
        "n_layers": k["n_layers"],
        "n_heads": k["n_heads"],
        "n_kv_heads": k["n_kv_heads"],
        "head_dim": k["head_dim"],
        "moe_inter_dim": k["moe_hidden_dim"],
        "norm_eps": ev.eval(ev.globals["_EPS"], {}),
        "qk_norm": qk_norm,
        "rope_theta": float(rope.get("theta", 10000.0)),
        "max_seq_len": rope["max_seq_len"],
        "enable_weight_tying": model_kwargs.get("enable_weight_tying", False),
        "moe_args": {
            "num_experts": k["num_experts"],
            "num_shared_experts": 0,  # make_moe_config(shared_experts=None) in the builder
            "top_k": k["top_k"],
            "score_func": router["score_func"],
            "route_norm": router["route_norm"],
            "route_scale": float(router["route_scale"]),
            "score_before_experts": False,  # 0.3.0's MoE scales the experts' outputs
            "num_expert_groups": router.get("num_expert_groups"),
            "num_limited_groups": router.get("num_limited_groups"),
            "gate_bias": router["bias"],
            "load_balance_coeff": moe["load_balance_coeff"],
        },
    }


def main(root):
    root = Path(root)
    out = {"torchtitan_version": "0.3.0", "dump_folder_default": None, "checkpoint_folder_default": None, "configs": {}}
    trainer = ast.parse((root / "torchtitan/trainer.py").read_text())
    for node in ast.walk(trainer):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "dump_folder":
            out["dump_folder_default"] = node.value.value
    base = ast.parse((root / "torchtitan/components/checkpointer/base.py").read_text())
    for node in ast.walk(base):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "folder":
            out["checkpoint_folder_default"] = node.value.value
    for module, (folder, flavor_table, builder, dense_builder) in MODULES.items():
        trees = [ast.parse((root / folder / "__init__.py").read_text()), ast.parse((root / folder / "config_registry.py").read_text())]
        ev = Evaluator(trees)
        registry_functions = [n.name for n in trees[1].body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
        for name in registry_functions:
            flavor_calls = []

            def model_registry(flavor, *rest, **kw):
                flavor_calls.append(flavor)
                return {"flavor": flavor}

            real_call = ev.call

            def call(fname, args, kwargs):
                if fname == "model_registry":
                    return model_registry(*args, **kwargs)
                return real_call(fname, args, kwargs)

            ev.call = call
            try:
                config = ev.call(name, [], {})
            finally:
                del ev.call
            if not isinstance(config, Call) or not flavor_calls:
                continue  # a helper (optimizer builders and the like), not a Trainer.Config function
            flavor = config["model_spec"]["flavor"]
            args, unsupported = flavor_args(ev, module, flavor_table, builder, dense_builder, flavor, root)
            training = config.get("training") or {}
            parallelism = config.get("parallelism") or {}
            checkpoint = config.get("checkpoint") or {}
            dataloader = config.get("dataloader") or {}
            entry = {
                "module": module,
                "flavor": flavor,
                "seq_len": training.get("seq_len"),
                "hf_assets_path": config.get("hf_assets_path"),
                "dataset": dataloader.get("dataset") if isinstance(dataloader, dict) else None,
                "expert_parallel_degree": parallelism.get("expert_parallel_degree", 1) if isinstance(parallelism, dict) else 1,
                "checkpoint_interval": checkpoint.get("interval") if isinstance(checkpoint, dict) else None,
                "checkpoint_enable": checkpoint.get("enable", False) if isinstance(checkpoint, dict) else False,
            }
            if unsupported:
                entry["unsupported"] = unsupported
            else:
                entry["model_args"] = args
            out["configs"][name] = entry
    json.dump(out, sys.stdout, separators=(",", ":"), sort_keys=True)  # compact: the fixture budget
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: torchtitan030_registry.py UNPACKED_WHEEL_FOLDER")
    main(sys.argv[1])
