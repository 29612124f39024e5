#!/usr/bin/env python3
"""Compare lm-eval 0.4.13's run over `moe-eval serve` with moe-eval's native run of the same tasks.

    compare_native.py --harness OUT/lm_eval --native NATIVE [NATIVE ...] [--tolerance 1e-4]
    compare_native.py --harness OUT/lm_eval                      # only summarise the harness run

--harness   the folder run_harness.sh wrote (results_*.json and samples_<task>_*.jsonl, any depth).
--native    moe-eval results files (JSON with `lm_eval_results` and `lm_eval_samples`), or per-sample
            JSONL logs (one record per line with a `task` field); several files are merged.

Checks, for every task and document the harness evaluated:
  * each request's log-likelihood equals the native one within --tolerance (absolute),
  * each request's greedy flag is equal,
  * the prompt/doc/target hashes are equal where the native record has them,
  * every metric the harness reports ("acc,none", "acc_stderr,none", "perplexity,none", …) equals the
    native one: exactly for 0/1-based means, else within --metric-rtol (relative).
Task names match after dropping the harness files' "_local" suffix (arc_easy_local ↔ arc_easy).

Native per-sample records are read leniently, because the native log's field names are its own:
the request values come from the first of `loglikelihoods`, `lls`, `resps`, `filtered_resps`, and
the greedy flags from `is_greedy`, `greedy`, or the second item of each `resps` entry.

Prints one line per check group and ends with "N passed, M failed"; exits 1 on any failure.
"""
import argparse
import glob
import json
import math
import os
import re
import sys

SUFFIX = "_local"
EXACT_METRICS = {"acc", "acc_norm", "exact_match", "acc_bytes", "acc_mutual_info"}


def canonical(task):
    return task[: -len(SUFFIX)] if task.endswith(SUFFIX) else task


# ------------------------------------------------------------------ harness side

def latest(paths):
    return sorted(paths)[-1] if paths else None


def read_harness(folder):
    """task → {"results": {metric: value}, "samples": {doc_id: record}}, plus group results."""
    tasks, groups = {}, {}
    for results_path in sorted(glob.glob(os.path.join(folder, "**", "results_*.json"), recursive=True)):
        results = json.load(open(results_path))
        stamp = os.path.basename(results_path)[len("results_"):-len(".json")]
        base = os.path.dirname(results_path)
        for task, metrics in results.get("results", {}).items():
            samples_path = latest(glob.glob(os.path.join(base, f"samples_{task}_{stamp}.jsonl")))
            samples = {}
            if samples_path:
                for line in open(samples_path):
                    record = json.loads(line)
                    samples[record["doc_id"]] = record
            if task in results.get("groups", {}):
                continue
            model_args = str(results.get("config", {}).get("model_args", ""))
            found = re.search(r"max_length=(\d+)", model_args)
            tasks[canonical(task)] = {"results": metrics, "samples": samples, "n_shot": results.get("n-shot", {}).get(task),
                                      "max_length": int(found.group(1)) if found else 2048}
        for group, metrics in results.get("groups", {}).items():
            groups[canonical(group)] = {"results": metrics, "samples": {}, "n_shot": None,
                                        "subtasks": results.get("group_subtasks", {}).get(group, [])}
    return tasks, groups


def rolling_windows_bound(record, max_length):
    """1 for a loglikelihood request. A rolling document's value is a sum over lm-eval's windows of
    max_length − 2 predicted tokens; each window carries its own fp32 rounding, so the tolerance is per
    window. The count is bounded above by bytes / (max_length − 2), as every token has at least one byte."""
    if not isinstance(record["resps"][0][0], str):
        return 1
    pair = record.get("byte_perplexity") or record.get("bits_per_byte")
    if not isinstance(pair, list) or len(pair) != 2:
        return 1
    return max(1, math.ceil(pair[1] / max(1, max_length - 2)))


def harness_requests(record):
    """[(loglikelihood, is_greedy or None)] for a harness sample record, in request order."""
    out = []
    for resp in record["resps"]:
        value = resp[0]
        if isinstance(value, list):            # loglikelihood: [ll, is_greedy]
            out.append((float(value[0]), value[1] == "True"))
        else:                                  # loglikelihood_rolling: ll
            out.append((float(value), None))
    return out


# ------------------------------------------------------------------ native side

def read_native(paths):
    results, samples = {}, {}
    for path in paths:
        if path.endswith(".jsonl"):
            for line in open(path):
                if line.strip():
                    record = json.loads(line)
                    samples.setdefault(canonical(record["task"]), {})[record["doc_id"]] = record
            continue
        data = json.load(open(path))
        for task, metrics in (data.get("lm_eval_results") or {}).items():
            results[canonical(task)] = metrics
        for task, records in (data.get("lm_eval_samples") or {}).items():
            for record in records:
                samples.setdefault(canonical(task), {})[record["doc_id"]] = record
    return results, samples


def native_requests(record):
    values = None
    for key in ("loglikelihoods", "lls", "resps", "filtered_resps"):
        if key in record:
            values = record[key]
            break
    if values is None:
        return None
    greedy = record.get("is_greedy", record.get("greedy"))
    out = []
    for i, value in enumerate(values):
        while isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
            value = value[0]
        flag = None
        if isinstance(value, list):
            value, flag = value[0], (value[1] in (True, "True")) if len(value) > 1 else None
        if greedy is not None and i < len(greedy):
            flag = bool(greedy[i])
        out.append((float(value), flag))
    return out


def metric_value(metrics, key):
    if key in metrics:
        return metrics[key]
    name = key.split(",")[0]                   # "acc,none" also matches a native "acc"
    return metrics.get(name)


# ------------------------------------------------------------------ comparison

class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, line):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(("ok    " if ok else "FAIL  ") + line)


def close(a, b, rtol):
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)


def compare(harness_tasks, harness_groups, native_results, native_samples, tol, rtol, report):
    for task, entry in sorted(harness_tasks.items()):
        records = native_samples.get(task)
        if records is None:
            report.check(False, f"{task}: no native per-sample records (native tasks: {sorted(native_samples)})")
        else:
            worst, count, greedy_bad, missing, hash_bad = 0.0, 0, [], [], []
            for doc_id, sample in sorted(entry["samples"].items()):
                native = records.get(doc_id)
                if native is None:
                    missing.append(doc_id)
                    continue
                for key in ("doc_hash", "prompt_hash", "target_hash"):
                    if key in native and native[key] != sample.get(key):
                        hash_bad.append(f"{doc_id}:{key}")
                ours = native_requests(native)
                theirs = harness_requests(sample)
                if ours is None or len(ours) != len(theirs):
                    missing.append(f"{doc_id} ({'no values' if ours is None else f'{len(ours)} vs {len(theirs)} requests'})")
                    continue
                allowed = tol * rolling_windows_bound(sample, entry["max_length"])
                for i, ((h_ll, h_greedy), (n_ll, n_greedy)) in enumerate(zip(theirs, ours)):
                    worst = max(worst, abs(h_ll - n_ll) / allowed * tol)
                    count += 1
                    if h_greedy is not None and n_greedy is not None and h_greedy != n_greedy:
                        greedy_bad.append(f"{doc_id}[{i}]")
            report.check(not missing, f"{task}: {len(entry['samples'])} documents paired" + (f"; unmatched {missing[:5]}" if missing else ""))
            per = " per rolling window" if any(isinstance(r["resps"][0][0], str) for r in entry["samples"].values()) else ""
            report.check(worst <= tol, f"{task}: {count} loglikelihoods, max |harness − native|{per} = {worst:.3g} (tolerance {tol:g})")
            report.check(not greedy_bad, f"{task}: greedy flags equal" + (f"; differ at {greedy_bad[:5]}" if greedy_bad else ""))
            if hash_bad:
                report.check(False, f"{task}: prompt/doc/target hashes differ at {hash_bad[:5]}")
        compare_metrics(task, entry["results"], native_results.get(task), rtol, report)
    for group, entry in sorted(harness_groups.items()):
        native = native_results.get(group)
        if native is None and entry.get("subtasks"):
            native = group_from_leaves([native_results.get(canonical(t)) for t in entry["subtasks"]])
            if native is not None:
                print(f"note  {group}: the native run has no such group; comparing with its size-weighted leaves")
        compare_metrics(group, entry["results"], native, rtol, report)


def group_from_leaves(leaves):
    """lm-eval's Group.aggregate with weight_by_size: Σ accᵢ·nᵢ / Σ nᵢ, and pooled_sample_stderr."""
    if not leaves or any(leaf is None or "acc,none" not in leaf or "sample_len" not in leaf for leaf in leaves):
        return None
    sizes = [int(leaf["sample_len"]) for leaf in leaves]
    total = sum(sizes)
    out = {"acc,none": sum(leaf["acc,none"] * n for leaf, n in zip(leaves, sizes)) / total}
    stderrs = [leaf.get("acc_stderr,none") for leaf in leaves]
    if all(isinstance(s, (int, float)) for s in stderrs) and total > len(sizes):
        pooled = sum((n - 1) * s * s * n for n, s in zip(sizes, stderrs)) / (total - len(sizes))
        out["acc_stderr,none"] = math.sqrt(pooled / total)
    return out


def compare_metrics(task, harness_metrics, native_metrics, rtol, report):
    if native_metrics is None:
        report.check(False, f"{task}: no native metrics")
        return
    for key, value in sorted(harness_metrics.items()):
        if "," not in key:                     # alias, name, sample_len, sample_count
            continue
        mine = metric_value(native_metrics, key)
        if value == "N/A" and mine is None:    # the native results leave out what the harness writes as "N/A"
            report.check(True, f"{task}: {key} N/A in both")
            continue
        base = key.split(",")[0].removesuffix("_stderr")
        # Means of 0/1 scores must agree to the last bits (they differ only by summation order).
        exact = base in EXACT_METRICS and "_stderr" not in key
        ok = close(value, mine, 1e-12 if exact else rtol)
        report.check(ok, f"{task}: {key} harness {value!r} native {mine!r}")


def summarise(harness_tasks, harness_groups):
    for task, entry in sorted({**harness_tasks, **harness_groups}.items()):
        metrics = {k: v for k, v in entry["results"].items() if "," in k and "stderr" not in k}
        shown = ", ".join(f"{k.split(',')[0]} {v:.6g}" if isinstance(v, float) else f"{k.split(',')[0]} {v}" for k, v in metrics.items())
        print(f"{task}: {len(entry['samples'])} documents; {shown}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--harness", required=True)
    parser.add_argument("--native", nargs="*", default=[])
    parser.add_argument("--tolerance", type=float, default=1e-4, help="per-request loglikelihood, absolute")
    parser.add_argument("--metric-rtol", type=float, default=1e-4, help="non-accuracy metrics and stderrs, relative")
    args = parser.parse_args()
    harness_tasks, harness_groups = read_harness(args.harness)
    if not harness_tasks:
        print(f"no results_*.json under {args.harness}", file=sys.stderr)
        return 2
    if not args.native:
        summarise(harness_tasks, harness_groups)
        return 0
    native_results, native_samples = read_native(args.native)
    report = Report()
    compare(harness_tasks, harness_groups, native_results, native_samples, args.tolerance, args.metric_rtol, report)
    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
