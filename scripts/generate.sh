#!/usr/bin/env bash
# Regenerates every committed generated file from the .proto files the way a package that depends
# on Bazaar does it: the GenerateCode plugin, driven by proto/bazaar-codegen.json.
#   scripts/generate.sh            write the files
#   scripts/generate.sh --check    write nothing; fail if anything would change
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  ""|--check) ;;
  *) echo "usage: scripts/generate.sh [--check]" >&2; exit 2 ;;
esac
swift package --allow-writing-to-package-directory generate-code ${1:-} 2>&1 | grep -v 'prohibited flag\|^Building for\|^\[[0-9]*/[0-9]*\]\|^Build of product'
exit "${PIPESTATUS[0]}"
