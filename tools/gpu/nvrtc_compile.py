#!/usr/bin/env python3
"""Dev check: compiles every CUDA kernel translation unit of Sources/MoECUDA/Kernels with NVRTC (from the
nvidia-cuda-nvrtc-cu12 wheel) for the given architectures. It compiles; it does not run anything.

    python3 -m venv .venv-cuda && .venv-cuda/bin/pip install nvidia-cuda-nvrtc-cu12
    .venv-cuda/bin/python tools/gpu/nvrtc_compile.py [80 90]

The kernel sources are Swift string literals; this script reads them the way the Swift compiler does for these
files (a multi-line literal, indentation removed up to the closing delimiter, optionally after
`CommonKernelCode.prelude +`). The CI check compiles `CUDAKernelSource.all` itself (MoECUDATests).
"""
import ctypes
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(ROOT, "Sources", "MoECUDA", "Kernels")


def multiline_literals(text):
    """(offset of the opening delimiter, value) of each Swift multi-line string literal in text."""
    out = []
    for m in re.finditer(r'"""\n(.*?)\n([ \t]*)"""', text, re.S):
        indent = m.group(2)
        lines = m.group(1).split("\n")
        value = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines)
        if "\\(" in value:
            raise SystemExit("string interpolation in a kernel literal is not supported by this script")
        out.append((m.start(), value.replace("\\\\", "\\")))
    return out


def kernel_units():
    prelude_text = open(os.path.join(KERNELS, "CommonKernelCode.swift")).read()
    prelude = multiline_literals(prelude_text)[0][1] + "\n"
    units = []
    for path in sorted(glob.glob(os.path.join(KERNELS, "*.swift"))):
        text = open(path).read()
        pattern = r'CUDAKernelSource\(\s*name: "([^"]+)",\s*source: (CommonKernelCode\.prelude \+ )?"""'
        for m in re.finditer(pattern, text):
            literal = [v for start, v in multiline_literals(text) if start == m.end() - 3]
            if not literal:
                raise SystemExit(f"{path}: cannot read the source literal of {m.group(1)}")
            entries = re.search(r'entryPoints: \[(.*?)\]', text[m.end():], re.S).group(1)
            units.append((m.group(1), (prelude if m.group(2) else "") + literal[0], re.findall(r'"([^"]+)"', entries)))
    return units


def load_nvrtc():
    pattern = os.path.join(sys.prefix, "lib", "python3*", "site-packages", "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")
    candidates = [c for c in glob.glob(pattern) if "builtins" not in c and "alt" not in c]
    if not candidates:
        raise SystemExit("libnvrtc not found under this venv (pip install nvidia-cuda-nvrtc-cu12)")
    return ctypes.CDLL(sorted(candidates)[0])


def main():
    arches = [int(a) for a in sys.argv[1:]] or [80, 90]
    nvrtc = load_nvrtc()
    nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    print(f"NVRTC {major.value}.{minor.value}")
    failures = 0
    units = kernel_units()
    for name, source, entries in units:
        for arch in arches:
            program = ctypes.c_void_p()
            rc = nvrtc.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None)
            assert rc == 0, rc
            for entry in entries:
                nvrtc.nvrtcAddNameExpression(program, entry.encode())
            options = [f"--gpu-architecture=sm_{arch}".encode(), b"--std=c++17"]
            array = (ctypes.c_char_p * len(options))(*options)
            rc = nvrtc.nvrtcCompileProgram(program, len(options), array)
            size = ctypes.c_size_t()
            nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            nvrtc.nvrtcGetProgramLog(program, log)
            cubin = ctypes.c_size_t()
            if rc == 0:
                nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(cubin))
            status = "ok" if rc == 0 else f"FAILED ({nvrtc.nvrtcGetErrorString(rc).decode()})"
            print(f"{name:20s} sm_{arch}: {status}, {len(entries)} entry points, cubin {cubin.value} bytes")
            text = log.value.decode(errors="replace").strip()
            if text:
                print(text)
            if rc != 0:
                failures += 1
            else:
                for entry in entries:
                    lowered = ctypes.c_char_p()
                    found = nvrtc.nvrtcGetLoweredName(program, entry.encode(), ctypes.byref(lowered)) == 0
                    if not found or lowered.value.decode() != entry:
                        print(f"  entry point {entry} missing or mangled")
                        failures += 1
            nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    print(f"{len(units)} units" + (", all compiled" if failures == 0 else f", {failures} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
