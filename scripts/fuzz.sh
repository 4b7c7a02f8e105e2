#!/usr/bin/env bash
# Fuzzes the wire decoder with libFuzzer (from the Swift toolchain) under AddressSanitizer.
#   FUZZ_SECONDS=60 scripts/fuzz.sh        (default 60 s; not part of `make test`)
# Crashing inputs are written to .build-fuzz/crashes/; the corpus grows in .build-fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${FUZZ_SECONDS:-60}
echo "fuzz: building wire-decode-fuzzer with -sanitize=fuzzer,address (a few minutes the first time)"
swift build --scratch-path .build-fuzz -c debug --product wire-decode-fuzzer \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -D -Xswiftc FUZZING 2>&1 | grep -E 'error|Build' | tail -3
mkdir -p .build-fuzz/corpus .build-fuzz/crashes
# Seed the corpus with two small valid encodings.
printf '\x08\x96\x01\x72\x05hello' > .build-fuzz/corpus/seed-scalar
printf '\x0a\x03ord\x1a\x0a\x0a\x03p-1\x18\x02' > .build-fuzz/corpus/seed-order
echo "fuzz: running for ${SECONDS_TO_RUN}s"
# New inputs go to the first folder; Tests/Fuzz/regressions holds inputs that once crashed.
.build-fuzz/debug/wire-decode-fuzzer .build-fuzz/corpus Tests/Fuzz/regressions -max_total_time="$SECONDS_TO_RUN" \
  -artifact_prefix=.build-fuzz/crashes/ -print_final_stats=1 2>&1 | tail -15
echo "fuzz: clean run of ${SECONDS_TO_RUN}s"
