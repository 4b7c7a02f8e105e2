#!/usr/bin/env bash
# Runs every test: the Swift suites (swift test) and the interop suites against real peers
# (Google's protobuf, grpcio-tools' protoc, Debian's protoc-c) with pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo; echo "==> $*"; }

step "building (debug, with tests, instrumented for coverage)"
# One build serves every suite: the Swift tests and the binaries the Python suites start all
# write raw coverage profiles, merged at the end (scripts/coverage.py).
swift build --build-tests --enable-code-coverage 2>&1 | grep -E 'error|warning: unre|Compiling|Build' | tail -3
coverage_raw="$PWD/.build/coverage/raw"
rm -rf "$coverage_raw" && mkdir -p "$coverage_raw"
rm -f .build/debug/codecov/*.profraw
# Every instrumented process started from here on writes its profile there when it exits (%4m: a
# pool of four files per binary, merged as they go, however many processes run).
export LLVM_PROFILE_FILE="$coverage_raw/%4m.profraw"
export BAZAAR_CODEGEN="$PWD/.build/debug/bazaar-codegen"
export BAZAAR_CONFORMANCE_DRIVER="$PWD/.build/debug/wire-conformance-driver"

step "PostgreSQL and Redis for the data-layer tests (throwaway, as plain processes)"
pg_dir=$(mktemp -d /tmp/bazaar-test-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis_pid=
cleanup() {
  bash scripts/postgres.sh stop "$pg_dir" > /dev/null 2>&1; rm -rf "$pg_dir"
  [ -n "$redis_pid" ] && kill "$redis_pid" 2> /dev/null || true
}
trap cleanup EXIT
export BAZAAR_TEST_POSTGRES=$(bash scripts/postgres.sh start "$pg_dir" "$pg_port")
echo "PostgreSQL: $BAZAAR_TEST_POSTGRES"
# Redis as a plain process: no persistence, loopback only.
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$pg_dir/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done
export BAZAAR_TEST_REDIS="127.0.0.1:$redis_port"
echo "Redis: $BAZAAR_TEST_REDIS"

step "Swift tests (codegen, wire runtime, core, mesh, telemetry, PostgreSQL, Redis, the fuzz corpora replayed)"
set +e
swift test --skip-build --enable-code-coverage > .build/swift-test.log 2>&1
swift_status=$?
set -e
# The data-store suites skip themselves without a server: here they must have run.
for suite in PostgresTests RedisTests; do
  if ! grep -q "Suite $suite passed" .build/swift-test.log; then
    echo "the $suite suite did not run (or failed)"
    swift_status=1
  fi
done
# Failures in full, then the closing lines of XCTest and Swift Testing.
grep -E '✘|error:|Fatal|Test run with' .build/swift-test.log || true
swift_passed=$(grep -oE 'Test run with [0-9]+ test' .build/swift-test.log | grep -oE '[0-9]+' | tail -1)
swift_failed=$(grep -cE '^✘ Test .* failed' .build/swift-test.log || true)

step "API check: proto/ against the last release (make api-check)"
set +e
bash scripts/api-check.sh
api_status=$?
set -e

step "interop, integration and deployment tests (protobuf, protoc, protoc-c, grpcio; the shop on PostgreSQL, Redis and an SMTP sink; kustomize, Helm, checkov, podman)"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider -rs --durations=15 Tests/Interop Tests/Integration Tests/Deployments 2>&1 | tee .build/pytest.log
py_status=${PIPESTATUS[0]}
set -e
py_passed=$(tail -1 .build/pytest.log | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
py_failed=$( (tail -1 .build/pytest.log | grep -oE '[0-9]+ (failed|error)' | grep -oE '[0-9]+'  || true) | awk '{s+=$1} END {print s+0}')

step "sanitizers: every Swift suite, and the RPC, mesh and shop suites' processes, under ThreadSanitizer and AddressSanitizer"
set +e
bash scripts/sanitizers.sh thread address 2>&1 | tee .build/sanitizers.log
san_status=${PIPESTATUS[0]}
set -e
san_line=$(grep -E '^sanitizers: [0-9]+ passed' .build/sanitizers.log | tail -1)
san_passed=$(echo "$san_line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
san_failed=$(echo "$san_line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 1)
py_passed=$(( ${py_passed:-0} + ${san_passed:-0} ))
py_failed=$(( ${py_failed:-0} + ${san_failed:-0} ))
[ "$san_status" -eq 0 ] || py_status=1

step "coverage of hand-written code (Swift tests and the processes the suites started)"
# The floor only ever rises: set it a little under the last clean run's total.
set +e
python3 scripts/coverage.py --build .build/debug --profiles .build/debug/codecov "$coverage_raw" \
  --floor 85 --json .build/coverage/summary.json
coverage_status=$?
set -e

passed=$(( ${swift_passed:-0} + ${py_passed:-0} ))
failed=$(( ${swift_failed:-0} + ${py_failed:-0} ))
if [ "$swift_status" -ne 0 ] || [ "$py_status" -ne 0 ] || [ "$api_status" -ne 0 ] || [ "$coverage_status" -ne 0 ]; then
  [ "$failed" -gt 0 ] || failed=1
  echo "swift test exit $swift_status, pytest exit $py_status, api-check exit $api_status, coverage exit $coverage_status"
  echo "make test: $passed passed, $failed failed"
  exit 1
fi
echo "make test: $passed passed, $failed failed"
