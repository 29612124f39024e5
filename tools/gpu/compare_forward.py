#!/usr/bin/env python3
"""Compares a `moe-eval forward` result with a committed TorchTitan reference (expected.json).

    compare_forward.py OURS.json EXPECTED.json NAME [--max-rel-logit-error 2e-2] [--min-expert-agreement 0.99]

Relative logit error: max |Δlogit| over every position and vocabulary entry, divided by max |reference logit|.
Expert agreement: the fraction of (layer, token, slot) routed-expert choices that are in the reference's set for
that token. Prints one line; exits 1 when a threshold is missed.
"""
import argparse
import json
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ours")
    parser.add_argument("expected")
    parser.add_argument("name")
    parser.add_argument("--max-rel-logit-error", type=float, default=2e-2)
    parser.add_argument("--min-expert-agreement", type=float, default=0.99)
    a = parser.parse_args()
    ours, ref = json.load(open(a.ours)), json.load(open(a.expected))
    diff = max(abs(x - y) for A, B in zip(ours["logits"], ref["logits"]) for r, s in zip(A, B) for x, y in zip(r, s))
    top = max(abs(y) for B in ref["logits"] for s in B for y in s)
    shape_ok = [len(b) for b in ours["logits"]] == [len(b) for b in ref["logits"]]
    agree = slots = 0
    for layer, routed in ref["routing"].items():
        mine = ours["routing"].get(layer, {"experts": []})["experts"]
        if len(mine) != len(routed["experts"]):
            shape_ok = False
        for x, y in zip(mine, routed["experts"]):
            agree += len(set(x) & set(y))
            slots += len(y)
    rel = diff / max(top, 1e-30)
    agreement = agree / max(slots, 1)
    ok = shape_ok and rel <= a.max_rel_logit_error and agreement >= a.min_expert_agreement
    print(f"{a.name:30s} rel logit err {rel:.2e} (≤ {a.max_rel_logit_error:g})  experts {agree}/{slots} = "
          f"{100 * agreement:.2f}% (≥ {100 * a.min_expert_agreement:g}%)  {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
