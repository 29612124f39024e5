#!/usr/bin/env python3
"""Python half of tools/bench/llamacpp_side_by_side.sh (dev-only, never in CI).

    convert   LLAMA_CPP_DIR HF_DIR OUTTYPE OUT.gguf
        moe-eval's HF export → GGUF with llama.cpp's own convert_hf_to_gguf.py. A tokenizer whose
        pre-tokenizer hash llama.cpp does not list (the demo tokenizer cut to a model's vocabulary) is
        written as the "deepseek-v3" pre-tokenizer, the split rule it was made with; the agreement check
        feeds token ids, so llama.cpp never splits text with it.
    agree     GGUF TOKENS.json FORWARD.json TOLERANCE THREADS
        llama.cpp's logits at every position (through the llama-cpp-python bindings of the same sdist,
        loading the shared libraries built beside llama-bench) against `moe-eval forward` on the same ids:
        mean log-likelihood of the next token within TOLERANCE, and the same top-1 token wherever either
        engine's top-1 beats its runner-up by more than TOLERANCE. Exits 1 otherwise.
    time      GGUF PROMPT DECODE THREADS
        The timing llama-bench does, through the same bindings, for when only libllama was built
        (--no-llama-bench): one prompt of PROMPT random ids in one batch with the last position's logits
        only, then DECODE tokens one at a time from an empty cache, each after one untimed warm-up.
        Prints "PREFILL_TOK_S DECODE_TOK_S".
"""

import json
import runpy
import sys
from pathlib import Path


def convert(llama_dir: str, hf_dir: str, outtype: str, outfile: str) -> int:
    sys.path.insert(0, llama_dir)
    sys.path.insert(1, str(Path(llama_dir) / "gguf-py"))
    from conversion import base

    recognised = base.TextModel.get_vocab_base_pre

    def pre_tokenizer(self, tokenizer):
        try:
            return recognised(self, tokenizer)
        except NotImplementedError:
            print("note: pre-tokenizer hash not in llama.cpp's list; written as deepseek-v3", file=sys.stderr)
            return "deepseek-v3"

    base.TextModel.get_vocab_base_pre = pre_tokenizer

    # The converter's view of config.json, not the file moe-eval reads: llama.cpp wants a group count
    # (n_group = 1 when there are no groups), and it reads a q_lora_rank for every DeepSeek-V2/V3 except the
    # 26/27-layer "Lite" shapes, where 0 means queries without a low-rank stage, as TorchTitan's q_lora_rank 0.
    read_config = base.ModelBase.load_hparams

    def load_hparams(dir_model, is_mistral_format):
        config = read_config(dir_model, is_mistral_format)
        if config.get("n_group") is None:
            config["n_group"], config["topk_group"] = 1, 1
        if config.get("q_lora_rank") is None:
            config["q_lora_rank"] = 0
        return config

    base.ModelBase.load_hparams = staticmethod(load_hparams)
    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outtype", outtype, "--outfile", outfile]
    runpy.run_path(str(Path(llama_dir) / "convert_hf_to_gguf.py"), run_name="__main__")
    return 0


def agree(gguf: str, tokens_file: str, forward_file: str, tolerance: float, threads: int) -> int:
    import numpy as np
    from llama_cpp import Llama

    tokens = json.load(open(tokens_file))["tokens"][0]
    ours = np.asarray(json.load(open(forward_file))["logits"][0], dtype=np.float64)
    llm = Llama(model_path=gguf, n_ctx=max(len(tokens), 64), n_batch=len(tokens), n_ubatch=len(tokens),
                n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
    llm.eval(tokens)
    theirs = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
    if theirs.shape != ours.shape:
        print(f"FAIL: logits shapes differ: llama.cpp {theirs.shape}, moe-eval {ours.shape}")
        return 1

    def mean_loglik(logits):
        rows = logits[:-1]
        lse = rows.max(axis=1) + np.log(np.exp(rows - rows.max(axis=1, keepdims=True)).sum(axis=1))
        return float(np.mean(rows[np.arange(len(rows)), tokens[1:]] - lse))

    def centred(logits):
        return logits - logits.mean(axis=1, keepdims=True)

    ll_ours, ll_theirs = mean_loglik(ours), mean_loglik(theirs)
    top_ours, top_theirs = ours.argmax(axis=1), theirs.argmax(axis=1)
    margin_ours = np.sort(ours, axis=1)[:, -1] - np.sort(ours, axis=1)[:, -2]
    margin_theirs = np.sort(theirs, axis=1)[:, -1] - np.sort(theirs, axis=1)[:, -2]
    decisive = np.maximum(margin_ours, margin_theirs) > tolerance
    wrong = int(np.sum((top_ours != top_theirs) & decisive))
    max_diff = float(np.abs(centred(ours) - centred(theirs)).max())
    print(f"  {len(tokens)} tokens: mean log-likelihood moe-eval {ll_ours:.6f}, llama.cpp {ll_theirs:.6f} "
          f"(|Δ| {abs(ll_ours - ll_theirs):.2e}); top-1 same at {int(np.sum(top_ours == top_theirs))}/{len(tokens)} "
          f"positions ({int(np.sum(decisive))} decisive, {wrong} decisive ones differ); "
          f"max |Δ logit| (each row centred) {max_diff:.2e}; tolerance {tolerance:g}")
    if abs(ll_ours - ll_theirs) > tolerance or wrong > 0:
        print("FAIL: moe-eval and llama.cpp disagree on the same weights")
        return 1
    return 0


def time_llama(gguf: str, prompt: int, decode: int, threads: int) -> int:
    import random
    import time
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=prompt + decode + 8, n_batch=prompt, n_ubatch=prompt,
                n_threads=threads, n_threads_batch=threads, logits_all=False, verbose=False)
    ids = [random.Random(1).randrange(llm.n_vocab()) for _ in range(prompt)]

    def prefill():
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        return time.perf_counter() - start

    def generate():
        llm.reset()
        start = time.perf_counter()
        for token in ids[:decode]:
            llm.eval([token])
        return time.perf_counter() - start

    prefill(), generate()
    print(f"{prompt / prefill():.2f} {decode / generate():.2f}")
    return 0


def main(argv):
    if len(argv) == 5 and argv[0] == "convert":
        return convert(*argv[1:])
    if len(argv) == 6 and argv[0] == "agree":
        return agree(argv[1], argv[2], argv[3], float(argv[4]), int(argv[5]))
    if len(argv) == 5 and argv[0] == "time":
        return time_llama(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
