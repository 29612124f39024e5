#!/usr/bin/env python3
"""Split a WikiText raw file into the documents of the HF `EleutherAI/wikitext_document_level` dataset.

lm-eval's `wikitext` task reads that hub dataset. Offline, the same documents come from the raw file
with the loader's rule (HF dataset script `wikitext_document_level.py`): read the file as text (Python
universal newlines, so CRLF becomes LF), split on "\n", and start a new page at every line for which
`line.replace("= = =", "===").replace("= =", "==").strip()` starts with "= " and ends with " =".
A page is its lines joined by "\n"; pages whose text is only whitespace are dropped, except the last.

Usage: wikitext_pages.py RAW_FILE OUT.jsonl
"""
import json
import sys


def pages(raw_path):
    with open(raw_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    current = []
    for line in lines:
        heading = line.replace("= = =", "===").replace("= =", "==").strip()
        if heading.startswith("= ") and heading.strip().endswith(" ="):
            page = "\n".join(current)
            if page.strip():
                yield page
            current = []
        current.append(line)
    yield "\n".join(current)


def main():
    raw_path, out_path = sys.argv[1], sys.argv[2]
    with open(out_path, "w", encoding="utf-8") as out:
        for page in pages(raw_path):
            out.write(json.dumps({"page": page}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
