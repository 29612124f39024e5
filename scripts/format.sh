#!/usr/bin/env bash
# Formats the Swift code git tracks with the toolchain's swift-format and the repository's .swift-format.
#   scripts/format.sh           rewrite the files in place
#   scripts/format.sh --check   change nothing: list the files that would change, exit 1 if there are any
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.swift')
case "${1:-}" in
  "")
    swift format --configuration .swift-format --in-place --parallel "${files[@]}"
    ;;
  --check)
    unformatted=0
    for file in "${files[@]}"; do
      if ! swift format --configuration .swift-format "$file" | cmp -s - "$file"; then
        echo "$file"
        unformatted=1
      fi
    done
    exit "$unformatted"
    ;;
  *)
    echo "usage: scripts/format.sh [--check]" >&2
    exit 2
    ;;
esac
