#!/usr/bin/env bash
# The tests again under ThreadSanitizer and AddressSanitizer: every Swift suite, and the Python
# suites that drive the RPC core, the mesh and the shop from many threads at once, against
# sanitized builds of every binary (servers, clients, the shop, mesh-test load). Any report fails
# the run; reports are kept in .build/sanitizers/.
#
#   scripts/sanitizers.sh [thread] [address]     (both by default)
#
# Needs BAZAAR_TEST_POSTGRES and BAZAAR_TEST_REDIS for the data-store suites (make test sets them).
# Ends with one line, "sanitizers: N passed, M failed", which make test adds to its count.
set -uo pipefail
cd "$(dirname "$0")/.."

kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(thread address)
reports_root="$PWD/.build/sanitizers"
mkdir -p "$reports_root"
passed=0
failed=0

# Python suites whose processes run sanitized: the transport (interop matrix), the mesh under
# faults (mesh-test replicas and load), and the shop's services on PostgreSQL and Redis.
tsan_suites=(Tests/Interop/test_rpc_interop.py Tests/Interop/test_mesh_resilience.py Tests/Integration/test_shop_flows.py)
asan_suites=(Tests/Interop/test_rpc_interop.py Tests/Integration/test_shop_flows.py)

count_pytest() {  # adds a pytest log's figures to the totals
  local log=$1 p f
  p=$(tail -1 "$log" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || true)
  f=$( (tail -1 "$log" | grep -oE '[0-9]+ (failed|error)' | grep -oE '[0-9]+' || true) | awk '{s+=$1} END {print s+0}')
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
}

count_swift() {  # the same for a swift test log (Swift Testing's closing line and its failures)
  local log=$1 n f
  n=$(grep -oE 'Test run with [0-9]+ test' "$log" | grep -oE '[0-9]+' | tail -1 || true)
  f=$(grep -cE '^✘ Test .* failed' "$log" || true)
  if [ -z "$n" ]; then  # the run ended before its closing line (a sanitizer stopped it)
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + n - f))
  failed=$((failed + f))
}

for kind in "${kinds[@]}"; do
  case "$kind" in
    thread) short=tsan; suites=("${tsan_suites[@]}") ;;
    address) short=asan; suites=("${asan_suites[@]}") ;;
    *) echo "sanitizers: unknown sanitizer '$kind' (thread or address)" >&2; exit 2 ;;
  esac
  scratch=".build-$short"
  reports="$reports_root/$short"
  rm -rf "$reports" && mkdir -p "$reports"
  echo "sanitizers: building everything with --sanitize=$kind in $scratch"
  if ! swift build --build-tests --sanitize="$kind" --scratch-path "$scratch" 2>&1 | grep -E 'error:|Build' | tail -3; then
    echo "sanitizers: the $kind build failed"
    failed=$((failed + 1))
    continue
  fi
  # detect_leaks=0: LeakSanitizer lists what is still allocated when a process exits (loop groups
  # and caches that live as long as the process, timers pending on a stopped loop), not growth;
  # growth over time is what make soak measures.
  case "$kind" in
    thread) options="halt_on_error=0 log_path=$reports/report" ;;
    address) options="detect_leaks=0 log_path=$reports/report" ;;
  esac
  echo "sanitizers: Swift suites under $kind"
  # A report fails the Swift run itself (ASan also stops at its first), and is kept in $reports.
  TSAN_OPTIONS="$options" ASAN_OPTIONS="$options" \
    swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" > "$reports/swift-test.log" 2>&1
  swift_status=$?
  grep -E '✘|Test run with' "$reports/swift-test.log" | tail -5
  count_swift "$reports/swift-test.log"
  if [ "$swift_status" -ne 0 ]; then failed=$((failed + 1)); fi

  echo "sanitizers: ${suites[*]} against $kind builds"
  # exitcode=0 for the processes the Python suites start: a report must not look like a crash to
  # the suite (which would hide it behind an unrelated failure); the report files decide below.
  TSAN_OPTIONS="$options exitcode=0" ASAN_OPTIONS="$options exitcode=0" \
    BAZAAR_BIN_DIR="$PWD/$scratch/debug" BAZAAR_CODEGEN="$PWD/$scratch/debug/bazaar-codegen" \
    .venv/bin/python -m pytest -q -p no:cacheprovider "${suites[@]}" > "$reports/pytest.log" 2>&1
  py_status=$?
  tail -1 "$reports/pytest.log"
  count_pytest "$reports/pytest.log"
  if [ "$py_status" -ne 0 ] && ! grep -qE '[0-9]+ (failed|error)' <(tail -1 "$reports/pytest.log"); then failed=$((failed + 1)); fi

  if ls "$reports"/report.* > /dev/null 2>&1; then
    echo "sanitizers: $kind reported (full reports in $reports):"
    grep -h "SUMMARY" "$reports"/report.* | sort | uniq -c
    failed=$((failed + $(ls "$reports"/report.* | wc -l)))
  else
    echo "sanitizers: no $kind report"
  fi
done

echo "sanitizers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
