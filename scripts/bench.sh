#!/usr/bin/env bash
# Codec benchmark: Bazaar vs swift-protobuf 1.39 (interleaved rounds), then callgrind instruction
# counts per operation, which are repeatable on this noisy machine. Prints what BENCHMARKS.md holds.
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"
ROUNDS=${ROUNDS:-15}
ITERATIONS=${ITERATIONS:-20000}
swift build -c release --product CodecBenchmark 2>&1 | grep -E 'error|Build' | tail -2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
.build/release/CodecBenchmark --rounds "$ROUNDS" --iterations "$ITERATIONS"
if command -v valgrind > /dev/null; then
  # valgrind 3.19 cannot read this toolchain's DWARF 5, so it runs a copy without debug info.
  bin=$(mktemp)
  cp .build/release/CodecBenchmark "$bin"
  strip --strip-debug "$bin"
  chmod +x "$bin"
  count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --only "$1" --iterations "$2" 2>&1 \
    | grep -oE 'Collected : [0-9]+' | grep -oE '[0-9]+'; }
  base=$(count bazaar-encode 0)
  echo
  echo "| operation | instructions per op (callgrind) |"
  echo "|---|---|"
  for op in bazaar-encode swift-protobuf-encode bazaar-decode swift-protobuf-decode; do
    n=$(count "$op" 2000)
    echo "| $op | $(( (n - base) / 2000 )) |"
  done
  rm -f "$bin"
fi
