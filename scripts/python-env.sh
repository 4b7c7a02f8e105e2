#!/usr/bin/env bash
# Creates .venv with the Python peers the tests use: Google's protobuf and
# grpcio-tools (whose bundled protoc generates the reference classes), grpcio
# and pytest. Idempotent: a venv whose stamp matches the requirements is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=scripts/requirements-test.txt
STAMP=.venv/.bazaar-stamp
if [ -f "$STAMP" ] && cmp -s "$REQ" "$STAMP"; then
  echo "python-env: .venv up to date"
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r "$REQ"
cp "$REQ" "$STAMP"
echo "python-env: .venv ready"
