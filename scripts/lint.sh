#!/usr/bin/env bash
# Lints every hand-written Swift file with the toolchain's `swift format` and .swift-format:
# generated code (Sources/Generated, Tests/Generated, Examples' generated targets, the benchmark's
# swift-protobuf code) is left out. Any finding fails. `scripts/lint.sh --fix` reformats instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.swift' | grep -v -e '^Sources/Generated/' -e '^Tests/Generated/' \
  -e '^Examples/[^/]*/Sources/[^/]*API/' -e '^Benchmarks/Sources/SwiftProtobufShop/')
if [ "${1:-}" = "--fix" ]; then
  swift format format -i --configuration .swift-format "${files[@]}"
  echo "lint: reformatted ${#files[@]} files"
  exit 0
fi
out=$(swift format lint --configuration .swift-format "${files[@]}" 2>&1) || true
if [ -n "$out" ]; then
  echo "$out"
  echo "lint: $(grep -c 'warning:' <<< "$out") finding(s) in hand-written code; scripts/lint.sh --fix reformats"
  exit 1
fi
echo "lint: ${#files[@]} files follow .swift-format"
