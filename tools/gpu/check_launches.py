#!/usr/bin/env python3
"""Dev check without a GPU: every `runtime.launch("kernel", shape, [args…])` in Sources/MoECUDA/Model passes as many
arguments as the kernel's `extern "C"` signature declares, each of the C type the signature says (pointer, int,
long long, float). A mismatch would not fail at launch: the kernel would read garbage.

    python3 tools/gpu/check_launches.py
"""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nvrtc_compile  # noqa: E402  (reads the kernel sources out of the Swift literals)

ROOT = nvrtc_compile.ROOT


def signatures():
    out = {}
    for _, source, _ in nvrtc_compile.kernel_units():
        for m in re.finditer(r'extern "C" __global__ void (\w+)\((.*?)\)\s*\{', source, re.S):
            kinds = []
            for parameter in m.group(2).replace("\n", " ").split(","):
                declared = parameter.strip().rsplit(" ", 1)[0]
                if "*" in parameter:
                    kinds.append("pointer")
                elif "long long" in declared:
                    kinds.append("int64")
                elif declared.endswith("float"):
                    kinds.append("float32")
                elif declared.endswith("int"):
                    kinds.append("int32")
                else:
                    kinds.append("unknown " + declared)
            out[m.group(1)] = kinds
    return out


def launches():
    for path in sorted(glob.glob(os.path.join(ROOT, "Sources", "MoECUDA", "Model", "*.swift"))):
        text = open(path).read()
        for m in re.finditer(r'runtime\.launch\(\s*"(\w+)",', text):
            start = text.index("[", m.end())
            depth, end = 0, start
            while True:
                depth += {"[": 1, "]": -1}.get(text[end], 0)
                if depth == 0:
                    break
                end += 1
            line = text.count("\n", 0, m.start()) + 1
            yield os.path.relpath(path, ROOT), line, m.group(1), re.findall(r"\.(pointer|int32|int64|float32)\(", text[start:end])


def main():
    kernels = signatures()
    failures = 0
    count = 0
    for path, line, name, kinds in launches():
        count += 1
        if kernels.get(name) != kinds:
            failures += 1
            print(f"{path}:{line}: {name}: passes {kinds}, the kernel declares {kernels.get(name, 'nothing (unknown kernel)')}")
    print(f"{count} launches checked" + ("" if failures == 0 else f", {failures} mismatched"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
