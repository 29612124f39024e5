#!/usr/bin/env bash
# Installs the system packages moe-eval builds against (Debian/Ubuntu). Needs root or sudo.
set -euo pipefail
# python3-venv: the test command's lm-evaluation-harness agreement check makes a venv for lm-eval.
# libsnappy-dev, libzstd-dev, zlib1g-dev: parquet page and Arrow buffer decompression (MoEData); libssl-dev: SHA-256 of downloaded Hub files.
# openmpi-bin, libopenmpi-dev: the MPI build (`--traits MPI`) and its `mpirun -np 2` tests (docs/DISTRIBUTED.md).
# libdnnl-dev: oneDNN, the bf16 and fp32 matmul kernels chosen at run time (docs/PERFORMANCE.md, "GEMM engine choice").
packages=(libopenblas-dev libdnnl-dev pkg-config zlib1g-dev libsnappy-dev libzstd-dev libssl-dev python3 python3-venv openmpi-bin libopenmpi-dev)
# chromium (CI only, MOE_EVAL_BROWSER_CHECK=1): the report's layout test renders it headless at 1280 px.
if [ "${MOE_EVAL_BROWSER_CHECK:-}" = "1" ]; then packages+=(chromium); fi
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
command -v swift >/dev/null || { echo "moe-eval needs a Swift 6 toolchain (swift.org/install) on PATH" >&2; exit 1; }
