#!/usr/bin/env python3
"""Writes assets/demo/hub: a few real HellaSwag and ARC-Easy items in the Hugging Face Hub cache layout.

Dev-only. Reads the original release files (from MOE_EVAL_SHARED_DATA, default ../shared/data beside the
repository), converts each record to the Hub dataset's schema (Rowan/hellaswag, allenai/ai2_arc ARC-Easy),
and stores it exactly as huggingface_hub caches a file: blobs/<sha256>, snapshots/<commit>/<path> as a
relative symlink to the blob, refs/main holding <commit>. The commit is a local id (sha1 of the files'
paths and digests), not a Hub commit. `--format parquet` writes parquet (pyarrow, snappy) instead of
JSON Lines, for when moe-eval reads parquet.

    python3 tools/reference/make_demo_benchmark_data.py [--items 40] [--format jsonl|parquet]
"""
import argparse
import hashlib
import io
import json
import os
import shutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO_ROOT, "assets", "demo", "hub")


def first_records(path, n):
    """The first n non-blank JSON Lines records of an original release file."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
                if len(records) == n:
                    break
    return records


def hellaswag_rows(path, n):
    # The Hub loader's schema: label a string ("0".."3"), the other fields as released.
    return [{
        "ind": r["ind"], "activity_label": r["activity_label"], "ctx_a": r["ctx_a"], "ctx_b": r["ctx_b"],
        "ctx": r["ctx"], "endings": r["endings"], "source_id": r["source_id"], "split": r["split"],
        "split_type": r["split_type"], "label": str(r.get("label", "")),
    } for r in first_records(path, n)]


def arc_rows(path, n):
    return [{
        "id": r["id"], "question": r["question"]["stem"],
        "choices": {"text": [c["text"] for c in r["question"]["choices"]], "label": [c["label"] for c in r["question"]["choices"]]},
        "answerKey": r["answerKey"],
    } for r in first_records(path, n)]


def encode(rows, fmt):
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def write_repo(repo, files):
    """files: {path in repo: bytes}."""
    folder = os.path.join(OUT, "datasets--" + repo.replace("/", "--"))
    shutil.rmtree(folder, ignore_errors=True)
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    commit = hashlib.sha1("".join(f"{p}\0{d}\n" for p, d in sorted(digests.items())).encode()).hexdigest()
    os.makedirs(os.path.join(folder, "blobs"))
    os.makedirs(os.path.join(folder, "refs"))
    with open(os.path.join(folder, "refs", "main"), "w") as f:
        f.write(commit)
    for path, data in files.items():
        blob = os.path.join(folder, "blobs", digests[path])
        with open(blob, "wb") as f:
            f.write(data)
        link = os.path.join(folder, "snapshots", commit, path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    args = parser.parse_args()
    shared = os.environ.get("MOE_EVAL_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
    ext = args.format
    hellaswag = hellaswag_rows(os.path.join(shared, "hellaswag", "hellaswag_val_subset1000.jsonl"), args.items)
    arc = arc_rows(os.path.join(shared, "arc", "ARC-Easy-Test.jsonl"), args.items)
    # File names the Hub's own repos use: Rowan/hellaswag has no configs (data/SPLIT…), ai2_arc keeps one
    # folder per config.
    write_repo("Rowan/hellaswag", {f"data/validation-00000-of-00001.{ext}": encode(hellaswag, args.format)})
    write_repo("allenai/ai2_arc", {f"ARC-Easy/test-00000-of-00001.{ext}": encode(arc, args.format)})


if __name__ == "__main__":
    main()
