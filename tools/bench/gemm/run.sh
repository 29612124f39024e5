#!/usr/bin/env bash
# GEMM engine comparison behind Linear (issue 15), out of CI: builds gemm_bench.c against moe-eval's own CKernels,
# OpenBLAS and oneDNN, then runs it under OpenBLAS's default core and each core this CPU's flags allow, alternating.
# Usage: tools/bench/gemm/run.sh [rounds-per-process] [processes-per-core]   (THREADS=2 by default)
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="${TMPDIR:-/tmp}/moe-eval-gemm-bench"
mkdir -p "$out"
cc -O2 -fopenmp -I"$root/Sources/CKernels/include" "$root/tools/bench/gemm/gemm_bench.c" \
  "$root/Sources/CKernels/kernels.c" "$root/Sources/CKernels/convert.c" -o "$out/gemm_bench" -lopenblas -ldnnl -lm
grep -m1 'model name' /proc/cpuinfo
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
cores=(default)
grep -qw avx512f /proc/cpuinfo && cores+=(SkylakeX)
grep -qw avx2 /proc/cpuinfo && cores+=(Haswell)
for ((p = 0; p < ${2:-1}; p++)); do
  for core in "${cores[@]}"; do
    echo "== OPENBLAS_CORETYPE=$core"
    if [ "$core" = default ]; then env -u OPENBLAS_CORETYPE "$out/gemm_bench" "${1:-5}"
    else OPENBLAS_CORETYPE=$core "$out/gemm_bench" "${1:-5}"; fi
  done
done
