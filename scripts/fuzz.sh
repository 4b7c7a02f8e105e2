#!/usr/bin/env bash
# Fuzzes every network parser (Tests/Fuzz/Targets: wire, http1, h2, grpc, json, jwt, redis, text, smtp,
# postgres, schema, web, connect) with libFuzzer from the Swift toolchain, under AddressSanitizer (linked with the toolchain's lld: Debian's
# gold crashes on these objects).
#   FUZZ_SECONDS=60 scripts/fuzz.sh            each target for 60 s (the default)
#   FUZZ_TARGETS="http1 json" scripts/fuzz.sh  only these
# Each target starts from its committed seeds (Tests/Fuzz/corpus/<target>) and the inputs that once
# crashed (Tests/Fuzz/regressions/<target>); what it learns grows in .build-fuzz/corpus/<target>.
# A crashing input is written to .build-fuzz/crashes/<target>/ and the script fails: fix the bug,
# then commit the input under Tests/Fuzz/regressions/<target>/ (make test replays it from then on).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"wire http1 h2 grpc json jwt redis text smtp postgres schema web connect"}
echo "fuzz: building bazaar-fuzz with -sanitize=fuzzer,address (a few minutes the first time)"
swift build --scratch-path .build-fuzz -c debug --product bazaar-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -D -Xswiftc FUZZING -Xswiftc -use-ld=lld 2>&1 | grep -E 'error|Build' | tail -3
failed=0
for t in $TARGETS; do
  mkdir -p ".build-fuzz/corpus/$t" ".build-fuzz/crashes/$t" "Tests/Fuzz/regressions/$t"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  # New inputs go to the first folder only; the committed ones are read, never written.
  if ! FUZZ_TARGET=$t .build-fuzz/debug/bazaar-fuzz ".build-fuzz/corpus/$t" "Tests/Fuzz/corpus/$t" "Tests/Fuzz/regressions/$t" \
      -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -artifact_prefix=".build-fuzz/crashes/$t/" \
      -print_final_stats=1 > ".build-fuzz/$t.log" 2>&1; then
    failed=1
    echo "fuzz: $t FOUND A CRASH (.build-fuzz/$t.log, inputs in .build-fuzz/crashes/$t/)"
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added|cov: " ".build-fuzz/$t.log" | tail -3 | sed "s/^/  $t: /"
done
[ "$failed" -eq 0 ] && echo "fuzz: every target ran clean" || exit 1
