#!/usr/bin/env bash
# Creates the Python environments the tests use:
#   .venv          the peers (Google's protobuf, grpcio-tools' protoc, grpcio), pytest, and the
#                  deployment checkers (kubernetes-validate, yamllint, helm-python-sdk)
#   .venv-checkov  checkov, alone: its pins would downgrade packages the other tools need
# Idempotent: a venv whose stamp matches its requirements file is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

make_venv() {  # make_venv DIR REQUIREMENTS
  local dir=$1 req=$2 stamp=$1/.bazaar-stamp
  if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
    echo "python-env: $dir up to date"
    return
  fi
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
  echo "python-env: $dir ready"
}
make_venv .venv scripts/requirements-test.txt
make_venv .venv-checkov scripts/requirements-checkov.txt
