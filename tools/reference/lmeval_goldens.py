#!/usr/bin/env python3
"""Reference data from lm-eval 0.4.13 itself for moe-eval's native benchmark tasks.

Runs the real harness (`lm_eval.simple_evaluate`, its task classes, samplers and metric functions) on
the custom task files in tools/reference/lmeval_tasks/ (local copies in ../shared/data), with a fake
language model whose answers are a deterministic function of the request strings. The Swift tests
implement the same function, so for identical requests they must get identical metrics.

Fake model (the Swift tests use the same definition):
  fnv(bytes)  = 64-bit FNV-1a
  loglikelihood(context, continuation):
      h = fnv(utf8(context) + b"\\0" + utf8(continuation))
      logprob   = -(h % 1000003) / 100000.0
      is_greedy = (h >> 33) % 4 == 0
  loglikelihood_rolling(text):
      h = fnv(b"rolling\\0" + utf8(text))
      logprob = -(len(utf8(text)) * 0.5) - (h % 1000003) / 100000.0

Writes Tests/MoEEvalTests/Fixtures/lmeval/:
  case_<name>.json  per case: every document's requests (context, continuation), few-shot pool indices,
                    target, the fake responses, per-document metrics, and the harness's results
  rng.json          CPython random.Random outputs (getrandbits, random, sample, shuffle, choices)
  windows.json      lm_eval.utils.get_rolling_token_windows + make_disjoint_window
  metrics.json      lm_eval.api.metrics functions on fixed inputs (mean_stderr, bootstrap perplexity, pooled)
  encoding.json     TemplateLM.loglikelihood's token requests (_encode_pair, empty context) with the GPT-2
                    tokenizer of ../shared/data/tokenizers (tokenizers 0.23.3)
  mmlu_subjects.json  the 57 subjects of lm-eval's mmlu group with their category group
  text.json         the harness's text functions (hellaswag preprocess, wikitext detokenizer and word count)
                    and Python str methods on awkward strings

Run from anywhere: ${MOE_EVAL_LMEVAL_VENV:-.venv-lmeval}/bin/python tools/reference/lmeval_goldens.py
(venv: python3 -m venv ${MOE_EVAL_LMEVAL_VENV:-.venv-lmeval} && ${MOE_EVAL_LMEVAL_VENV:-.venv-lmeval}/bin/pip install -r tools/reference/requirements-lmeval.txt)
"""
import glob
import gzip
import json
import math
import os
import random
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TASKS_DIR = os.path.join(ROOT, "tools", "reference", "lmeval_tasks")
OUT_DIR = os.path.join(ROOT, "Tests", "MoEEvalTests", "Fixtures", "lmeval")
DATA = os.path.join(ROOT, "..", "shared", "data")
WIKITEXT_RAW = os.path.join(DATA, "wikitext2", "wikitext-2-raw-v1_test_nonblank_crlf.raw")
WIKITEXT_PAGES = "/tmp/moe-eval-lmeval/wikitext2_test_pages.jsonl"

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One process for the bootstrap: the harness documents that both paths give the same numbers.
os.environ.setdefault("DISABLE_MULTIPROC", "1")
os.chdir(ROOT)  # the task files use data paths relative to the repository root

import lm_eval  # noqa: E402
from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api import metrics as lm_metrics  # noqa: E402
from lm_eval.api import samplers  # noqa: E402
from lm_eval.api.model import LM, TemplateLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from lm_eval import utils as lm_utils  # noqa: E402


# ---------------------------------------------------------------- fake model

def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fake_loglikelihood(context: str, continuation: str):
    h = fnv1a64(context.encode("utf-8") + b"\0" + continuation.encode("utf-8"))
    return -(h % 1000003) / 100000.0, (h >> 33) % 4 == 0


def fake_rolling(text: str) -> float:
    data = text.encode("utf-8")
    h = fnv1a64(b"rolling\0" + data)
    return -(len(data) * 0.5) - (h % 1000003) / 100000.0


class FakeLM(LM):
    def loglikelihood(self, requests, disable_tqdm=False):
        return [fake_loglikelihood(*r.args) for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        return [fake_rolling(r.args[0]) for r in requests]

    def generate_until(self, requests, disable_tqdm=False):
        raise NotImplementedError


# ---------------------------------------------------------------- few-shot recording

FEWSHOT_RECORD = []


def _recording(original):
    def sample(self, n, eval_doc=None, df=None, **kwargs):
        result = original(self, n, eval_doc=eval_doc, df=df, **kwargs)
        pool = self.fewshot_docs() if type(self) is samplers.ContextSampler else self.df
        FEWSHOT_RECORD.append([next(i for i, d in enumerate(pool) if d is doc) for doc in result])
        return result
    return sample


samplers.ContextSampler.sample = _recording(samplers.ContextSampler.sample)
samplers.FirstNSampler.sample = _recording(samplers.FirstNSampler.sample)


# ---------------------------------------------------------------- cases

CASES = [
    # name, harness task, native task, few-shot, limit, data (eval, few-shot pool) relative to the repo root
    ("hellaswag_0shot", "hellaswag_local", "hellaswag", 0, 40, "hellaswag/hellaswag_val_subset1000.jsonl", None),
    ("hellaswag_3shot", "hellaswag_local", "hellaswag", 3, 12, "hellaswag/hellaswag_val_subset1000.jsonl",
     "hellaswag/hellaswag_val_subset1000.jsonl"),
    ("arc_easy_0shot", "arc_easy_local", "arc_easy", 0, 40, "arc/ARC-Easy-Test.jsonl", None),
    ("arc_easy_5shot", "arc_easy_local", "arc_easy", 5, 12, "arc/ARC-Easy-Test.jsonl", "arc/ARC-Easy-Train.jsonl"),
    ("mmlu_pair_0shot", "mmlu_pair_local", "mmlu", 0, None, "mmlu/data/test", None),
    ("mmlu_pair_5shot", "mmlu_pair_local", "mmlu", 5, 8, "mmlu/data/test", "mmlu/data/dev"),
    ("winogrande_0shot", "winogrande_local", "winogrande", 0, 40, "winogrande/winogrande_xl_validation.jsonl", None),
    ("winogrande_4shot", "winogrande_local", "winogrande", 4, 12, "winogrande/winogrande_xl_validation.jsonl",
     "winogrande/winogrande_xl_validation.jsonl"),
    ("piqa_0shot", "piqa_local", "piqa", 0, None, "@piqa/validation.jsonl", None),
    ("piqa_2shot", "piqa_local", "piqa", 2, None, "@piqa/validation.jsonl", "@piqa/validation.jsonl"),
    ("boolq_superglue_0shot", "boolq_superglue_local", "boolq", 0, 25, "boolq/superglue_boolq_val.jsonl", None),
    ("boolq_hf_0shot", "boolq_hf_local", "boolq", 0, 10, "boolq/hf_boolq_validation.jsonl", None),
    ("boolq_superglue_1shot", "boolq_superglue_local", "boolq", 1, 6, "boolq/superglue_boolq_val.jsonl",
     "boolq/superglue_boolq_val.jsonl"),
    ("openbookqa_0shot", "openbookqa_local", "openbookqa", 0, 40, "openbookqa/test.jsonl", None),
    ("lambada_0shot", "lambada_openai_local", "lambada_openai", 0, 60, "lambada/lambada_test.jsonl", None),
    ("lambada_2shot", "lambada_openai_local", "lambada_openai", 2, 10, "lambada/lambada_test.jsonl",
     "lambada/lambada_test.jsonl"),
    ("wikitext_0shot", "wikitext_local", "wikitext", 0, 12, "wikitext2/wikitext-2-raw-v1_test_nonblank_crlf.raw", None),
]


def number_or_none(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_case(task_manager, name, harness_task, native_task, shots, limit, eval_data, fewshot_data):
    FEWSHOT_RECORD.clear()
    out = simple_evaluate(model=FakeLM(), tasks=[harness_task], num_fewshot=shots, limit=limit,
                          task_manager=task_manager, log_samples=True, bootstrap_iters=100000)
    rolling = native_task == "wikitext"
    leaf_tasks = sorted(out["samples"].keys())
    case = {
        "case": name, "harness_task": harness_task, "native_task": native_task, "num_fewshot": shots,
        "limit": limit, "lm_eval_version": lm_eval.__version__,
        "data": {"eval": eval_data, "fewshot": fewshot_data},
        "tasks": {},
    }
    record = iter(FEWSHOT_RECORD)
    for task in leaf_tasks:  # lm-eval builds requests task by task in this (sorted) order here
        docs = []
        for sample in sorted(out["samples"][task], key=lambda s: s["doc_id"]):
            args = sample["arguments"]  # in memory: one tuple of strings per request
            entry = {"doc_id": sample["doc_id"], "target": str(sample["target"])}
            if rolling:
                text = args[0][0]
                del entry["target"]  # the detokenized page itself, identified by text_fnv below
                entry["text_fnv"] = "%016x" % fnv1a64(text.encode("utf-8"))
                entry["text_scalars"] = len(text)
                entry["resps"] = [float(r[0]) for r in sample["resps"]]  # one float per document
                entry["metrics"] = {k: sample[k] for k in ("word_perplexity", "byte_perplexity", "bits_per_byte")}
            else:
                contexts = []
                requests = []
                for context, continuation in args:
                    if context not in contexts:
                        contexts.append(context)
                    requests.append([contexts.index(context), continuation])
                entry["contexts"] = contexts
                entry["requests"] = requests
                entry["resps"] = [[float(r[0][0]), bool(r[0][1])] for r in sample["resps"]]
                entry["metrics"] = {k: sample[k] for k in sample["metrics"]}
            docs.append(entry)
        fewshot = []
        if shots > 0:
            fewshot = [next(record) for _ in docs]
        for entry, indices in zip(docs, fewshot):
            entry["fewshot_indices"] = indices
        results = {k: number_or_none(v) for k, v in out["results"][task].items() if k not in ("alias", "name")}
        case["tasks"][task] = {"docs": docs, "results": results, "n_shot": out["n-shot"][task]}
    if "groups" in out:
        case["groups"] = {g: {k: number_or_none(v) for k, v in r.items() if k not in ("alias", "name")}
                          for g, r in out["groups"].items()}
    assert next(record, None) is None, "unconsumed few-shot records"
    return case


# ---------------------------------------------------------------- pure-function goldens

def rng_goldens():
    cases = []
    for seed in (0, 1, 1234, 2**32 + 5, 987654321987654321):
        r = random.Random(seed)
        cases.append({"seed": seed, "getrandbits32": [r.getrandbits(32) for _ in range(5)],
                      "getrandbits": [[k, random.Random(seed).getrandbits(k)] for k in (1, 7, 31, 32)],
                      "random": [random.Random(seed).random() for _ in range(1)]
                      + [x for x in (lambda rr: [rr.random() for _ in range(4)])(random.Random(seed))]})
    samples = []
    for seed, n, k, draws in ((1234, 20, 5, 3), (1234, 20, 6, 2), (1234, 2251, 5, 4), (1234, 1000, 4, 3),
                              (7, 21, 3, 2), (7, 22, 3, 2), (7, 60, 6, 2), (7, 62, 8, 2), (99, 5153, 3, 3),
                              (5, 8, 3, 3), (5, 9, 9, 1), (5, 1, 1, 1), (11, 300, 30, 1)):
        r = random.Random(seed)
        samples.append({"seed": seed, "n": n, "k": k, "draws": [r.sample(range(n), k) for _ in range(draws)]})
    shuffles = []
    for seed, n in ((1234, 10), (0, 57), (42, 1)):
        x = list(range(n))
        random.Random(seed).shuffle(x)
        shuffles.append({"seed": seed, "n": n, "result": x})
    choices = []
    for seed, n in ((0, 10), (1, 37), (99, 5)):
        choices.append({"seed": seed, "n": n, "result": random.Random(seed).choices(range(n), k=n)})
    return {"python": sys.version.split()[0], "int_seeds": cases, "sample": samples, "shuffle": shuffles,
            "choices": choices}


def window_goldens():
    out = []
    for n, max_seq_len in ((10, 4), (3, 4), (0, 4), (1, 1), (7, 1), (9, 3), (64, 64), (65, 64), (200, 63)):
        tokens = list(range(n))
        windows = [list(map(list, lm_utils.make_disjoint_window(w)))
                   for w in lm_utils.get_rolling_token_windows(tokens, -1, max_seq_len, 1)]
        out.append({"tokens": n, "max_seq_len": max_seq_len, "prefix": -1, "windows": windows})
    return out


def metric_goldens():
    rnd = random.Random(2024)
    acc = [float(rnd.random() < 0.3) for _ in range(37)]
    lls = [-rnd.random() * 12 for _ in range(23)]
    sizes = [100, 135, 5, 1534]
    stderrs = [0.0473, 0.0391, 0.2236, 0.0112]
    rolling = [(-rnd.random() * 900, rnd.randrange(50, 400)) for _ in range(7)]
    return {
        "acc_items": acc, "mean": lm_metrics.mean(acc), "mean_stderr": lm_metrics.mean_stderr(acc),
        "ll_items": lls, "perplexity": lm_metrics.perplexity(lls),
        "perplexity_bootstrap_stderr_1000": lm_metrics.bootstrap_stderr(lm_metrics.perplexity, lls, iters=1000),
        "perplexity_bootstrap_stderr_100000": lm_metrics.bootstrap_stderr(lm_metrics.perplexity, lls, iters=100000),
        "pooled": {"sizes": sizes, "stderrs": stderrs, "values": [0.31, 0.42, 0.6, 0.27],
                   "aggregate": lm_metrics.aggregate_subtask_metrics([0.31, 0.42, 0.6, 0.27], sizes, True),
                   "pooled_stderr": float(lm_metrics.pooled_sample_stderr(stderrs, sizes))},
        "rolling_items": [list(x) for x in rolling],
        "weighted_perplexity": lm_metrics.weighted_perplexity(rolling),
        "bits_per_byte": lm_metrics.bits_per_byte(rolling),
    }


def encoding_goldens(cases):
    import tokenizers

    path = os.path.join(DATA, "tokenizers", "gpt2_olmo_test_fixture", "tokenizer.json.gz")
    tok = tokenizers.Tokenizer.from_str(gzip.decompress(open(path, "rb").read()).decode("utf-8"))
    prefix = 50256

    class Encoder(TemplateLM):
        def __init__(self):
            super().__init__()
            self.captured = None

        @property
        def eot_token_id(self):
            return prefix

        def tok_encode(self, string, add_special_tokens=None, **kwargs):
            return tok.encode(string, add_special_tokens=False).ids

        def _loglikelihood_tokens(self, requests, **kwargs):
            self.captured = [[list(ctx), list(cont)] for _, ctx, cont in requests]
            return [(0.0, False)] * len(requests)

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def generate_until(self, requests, disable_tqdm=False):
            raise NotImplementedError

    class Req:
        def __init__(self, args):
            self.args = args

    pairs = []
    for case in cases:
        for task in case["tasks"].values():
            for doc in task["docs"][:2]:
                for ctx_index, cont in doc.get("requests", [])[:2]:
                    pairs.append([doc["contexts"][ctx_index], cont])
    pairs += [
        ["", " hello world"], ["", "hello"], ["", "<|endoftext|>abc"], ["Answer:\n\n", "B"],
        ["trailing tab\t", " x"], ["nbsp\u00a0", "y"], ["ideographic\u3000 ", "z"],
        ["Question: caf\u00e9?\nAnswer:", " \u00e9t\u00e9"], ["emoji \U0001F373", " done."],
        ["no space", "glued"], ["x", ""], ["a  ", "  b"],
    ]
    encoder = Encoder()
    encoder.loglikelihood([Req(tuple(p)) for p in pairs], disable_tqdm=True)
    return {"tokenizer": "gpt2_olmo_test_fixture/tokenizer.json.gz", "tokenizers": tokenizers.__version__,
            "prefix_token_id": prefix,
            "requests": [{"context": p[0], "continuation": p[1], "context_tokens": c[0], "continuation_tokens": c[1]}
                         for p, c in zip(pairs, encoder.captured)]}


TEXT_SAMPLES = [
    "How to X [title] Step one.  [header] Do  it   now ",
    "  [title] a [b\nc] d [e] f   g    h [unclosed",
    "\u00a0\u3000 ΟΔΟΣ ΚΑΛΟΣ Σ\u2028",
    "hELLO wORLD, ǆemal İstanbul ß ŉ",
    "",
    "  ",
    "The s ' cat /' 4/ and 1 @-@ 2 @,@ 3 @.@ 4 : x ; y . z ! w ? v , u",
    "( a b ) [  c ] {d  } \" e f \" ' g ' \"open ( unclosed [ x",
    " = = = Head = = = \n = = H2 = = \n = Title = \n text 5 \u00b0 C \n N items 's end \t ",
    "a\r\nb\u0085c\u2029d  e\t\tf",
    "it's the dog 's bone ' and ' s",
]


def text_goldens():
    from lm_eval.tasks.hellaswag.utils import preprocess
    from lm_eval.tasks.wikitext.preprocess_wikitext import process_results, wikitext_detokenizer
    import re
    out = []
    for text in TEXT_SAMPLES:
        words = process_results({"page": text}, (0.0,))
        out.append({"text": text, "hellaswag_preprocess": preprocess(text), "capitalize": text.capitalize(),
                    "strip": text.strip(), "lstrip": text.lstrip(), "rstrip_count": len(text) - len(text.rstrip()),
                    "wikitext_detokenize": wikitext_detokenizer({"page": text}),
                    "words": words["word_perplexity"][1], "bytes": words["byte_perplexity"][1],
                    "split_space": text.split(" "), "regex_split_count": len(re.split(r"\s+", text))})
    return out


def mmlu_subjects():
    base = os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "mmlu", "default")
    subjects = {}
    for path in sorted(glob.glob(os.path.join(base, "mmlu_*.yaml"))):
        with open(path) as f:
            fields = {}
            for line in f:
                if ":" in line:
                    key, value = line.split(":", 1)
                    fields[key.strip().strip('"')] = value.strip().strip('"')
        subjects[fields["dataset_name"]] = fields["tag"].replace("mmlu_", "").replace("_tasks", "")
    return subjects


def dump(name, value):
    with open(os.path.join(OUT_DIR, name), "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


FULL_CASES = [
    ("hellaswag_0shot", "hellaswag_local", "hellaswag", 0, None, "hellaswag/hellaswag_val_subset1000.jsonl", None),
    ("hellaswag_3shot", "hellaswag_local", "hellaswag", 3, None, "hellaswag/hellaswag_val_subset1000.jsonl",
     "hellaswag/hellaswag_val_subset1000.jsonl"),
    ("arc_easy_0shot", "arc_easy_local", "arc_easy", 0, None, "arc/ARC-Easy-Test.jsonl", None),
    ("arc_easy_5shot", "arc_easy_local", "arc_easy", 5, None, "arc/ARC-Easy-Test.jsonl", "arc/ARC-Easy-Train.jsonl"),
    ("mmlu_all_0shot", "mmlu_all_local", "mmlu", 0, None, "mmlu/data/test", None),
    ("mmlu_all_5shot", "mmlu_all_local", "mmlu", 5, None, "mmlu/data/test", "mmlu/data/dev"),
    ("winogrande_0shot", "winogrande_local", "winogrande", 0, None, "winogrande/winogrande_xl_validation.jsonl", None),
    ("winogrande_4shot", "winogrande_local", "winogrande", 4, None, "winogrande/winogrande_xl_validation.jsonl",
     "winogrande/winogrande_xl_validation.jsonl"),
    ("boolq_superglue_0shot", "boolq_superglue_local", "boolq", 0, None, "boolq/superglue_boolq_val.jsonl", None),
    ("boolq_hf_0shot", "boolq_hf_local", "boolq", 0, None, "boolq/hf_boolq_validation.jsonl", None),
    ("openbookqa_0shot", "openbookqa_local", "openbookqa", 0, None, "openbookqa/test.jsonl", None),
    ("lambada_0shot", "lambada_openai_local", "lambada_openai", 0, None, "lambada/lambada_test.jsonl", None),
    ("wikitext_0shot", "wikitext_local", "wikitext", 0, None, "wikitext2/wikitext-2-raw-v1_test_nonblank_crlf.raw", None),
]


def all_mmlu_tasks_dir():
    """The task files plus one local task per MMLU subject and a group `mmlu_all_local` over all 57."""
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="moe-eval-lmeval-tasks-")
    for name in os.listdir(TASKS_DIR):
        if not name.startswith("mmlu_"):
            shutil.copy(os.path.join(TASKS_DIR, name), folder)
    subjects = sorted(mmlu_subjects())
    for subject in subjects:
        with open(os.path.join(folder, f"mmlu_{subject}_local.yaml"), "w") as f:
            f.write(f"""include: _mmlu_local_template_yaml
task: mmlu_{subject}_local
dataset_kwargs:
  data_files:
    dev: ../shared/data/mmlu/data/dev/{subject}_dev.csv
    test: ../shared/data/mmlu/data/test/{subject}_test.csv
  column_names: [question, A, B, C, D, answer]
  keep_default_na: false
description: "The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}.\\n\\n"
""")
    with open(os.path.join(folder, "mmlu_all_local.yaml"), "w") as f:
        f.write("group: mmlu_all_local\ntask:\n" + "".join(f"  - mmlu_{s}_local\n" for s in subjects)
                + "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: True\nmetadata:\n  version: 2\n")
    return folder


def main():
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", help="only these cases (default: all, plus the pure-function goldens)")
    parser.add_argument("--full", metavar="DIR",
                        help="instead: every document of every task (all 57 MMLU subjects), written to DIR (not committed); "
                             "MOE_EVAL_LMEVAL_FULL=DIR swift test --filter TaskTestsHarnessAgreement checks them")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(WIKITEXT_PAGES), exist_ok=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "reference", "wikitext_pages.py"),
                    WIKITEXT_RAW, WIKITEXT_PAGES], check=True)
    global OUT_DIR
    if args.full:
        OUT_DIR = os.path.abspath(args.full)
        task_manager = TaskManager(include_path=all_mmlu_tasks_dir())
        specs = FULL_CASES
    else:
        task_manager = TaskManager(include_path=TASKS_DIR)
        specs = CASES
    os.makedirs(OUT_DIR, exist_ok=True)
    cases = []
    for spec in specs:
        if args.cases and spec[0] not in args.cases:
            continue
        case = run_case(task_manager, *spec)
        cases.append(case)
        dump(f"case_{spec[0]}.json", case)
        print("wrote", spec[0], flush=True)
    if not args.cases and not args.full:
        dump("rng.json", rng_goldens())
        dump("windows.json", window_goldens())
        dump("metrics.json", metric_goldens())
        dump("encoding.json", encoding_goldens(cases))
        dump("mmlu_subjects.json", mmlu_subjects())
        dump("text.json", text_goldens())
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT_DIR, "**", "*"), recursive=True)
                if os.path.isfile(p))
    print(f"fixtures: {total} bytes")


if __name__ == "__main__":
    main()
