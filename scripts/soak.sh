#!/usr/bin/env bash
# make soak: the mixed shop workload through the gateway for a set time (30 minutes by default)
# against release binaries, every process sampled (fds, RSS, RPCs in flight, database
# connections); fails if any of them grows after warm-up or a request fails. Report and samples
# in .build/soak/ (docs/reliability.md quotes the last run).
#
#   scripts/soak.sh                 SOAK_SECONDS=1800 USERS=24 EVERY=10
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-1800}
USERS=${USERS:-24}
EVERY=${EVERY:-10}
echo "soak: building release binaries"
swift build -c release --product bazaar 2>&1 | grep -E 'error|Build' | tail -1
work=$(mktemp -d /tmp/bazaar-soak.XXXXXX); chmod 755 "$work"  # PostgreSQL runs as its own user
cleanup() { bash scripts/postgres.sh stop "$work/pg" > /dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
conninfo=$(bash scripts/postgres.sh start "$work/pg" "$port")
export BAZAAR_TEST_POSTGRES=$conninfo
export BAZAAR_BIN_DIR=$PWD/.build/release
echo "soak: $(nproc) cores, ${SOAK_SECONDS} s, $USERS shoppers, a sample every $EVERY s"
.venv/bin/python Tests/Integration/soak.py --seconds "$SOAK_SECONDS" --users "$USERS" --every "$EVERY" --report .build/soak
