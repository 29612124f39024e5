#!/usr/bin/env bash
# Packs what tools/gpu/check.sh needs on a GPU machine that has no Swift toolchain: the release binary built with
# the Swift runtime linked in, the shared libraries it needs beyond glibc (per ldd: OpenBLAS, gfortran, …), the
# DeepSeek-V3 fixtures it checks, and the PyTorch comparison script, as one compressed archive in an ignored folder.
# Usage: tools/gpu/pack.sh            → .gpu-pack/moe-eval-gpu.tar.xz (device tool: carry [".gpu-pack"])
# No CUDA is needed here: the binary loads the driver, cuBLAS and NVRTC at run time. The static Swift runtime's
# FoundationNetworking links libcurl: the build machine needs libcurl4-openssl-dev (apt).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${MOE_EVAL_GPU_PACK:-.gpu-pack}"
# A build folder of its own, so the static-stdlib build does not replace the ordinary release build's products.
scratch="${MOE_EVAL_GPU_BUILD:-.build-gpu}"
swift build -c release -j "${MOE_EVAL_BUILD_JOBS:-1}" --scratch-path "$scratch" --static-swift-stdlib --product moe-eval
bin="$(swift build -c release --scratch-path "$scratch" --static-swift-stdlib --show-bin-path)/moe-eval"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/fixtures"
cp "$bin" "$stage/bin/moe-eval"
strip "$stage/bin/moe-eval" 2>/dev/null || true
# glibc's own libraries come from the target machine; everything else travels.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libresolv.so.* | libutil.so.* | ld-linux*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
if ldd "$bin" | grep -q "not found"; then
  echo "pack: the binary needs libraries this machine lacks:" >&2
  ldd "$bin" | grep "not found" >&2
  exit 1
fi
cp -r Tests/MoEModelsTests/Fixtures/dsv3 "$stage/fixtures/"
cp tools/gpu/torch_bench.py tools/gpu/compare_forward.py "$stage/"
mkdir -p "$out"
archive="$out/moe-eval-gpu.tar.xz"
tar -C "$stage" -cf - . | xz -9 -T0 > "$archive.tmp"
mv "$archive.tmp" "$archive"
size=$(stat -c %s "$archive")
echo "pack: $archive, $((size / 1024 / 1024)) MiB ($(ls "$stage/lib" | tr '\n' ' '))"
if [ "$size" -ge $((60 * 1024 * 1024)) ]; then
  echo "pack: the archive must stay well under the device tool's 64 MiB carry limit" >&2
  exit 1
fi
