#!/usr/bin/env bash
# `make api-check`: the .proto files under proto/ against those of the last release, refusing
# changes that break clients or services built on it (removed or renumbered fields, changed types,
# removed methods or services, changed HTTP bindings, weakened field rules; see docs/codegen.md).
#   scripts/api-check.sh          against the newest tag vX.Y.Z reachable from HEAD
#   scripts/api-check.sh REF      against any commit, branch or tag
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
ref="${1:-}"
if [ -z "$ref" ]; then
  ref=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2> /dev/null || true)
  if [ -z "$ref" ]; then
    echo "api-check: no release tag (vX.Y.Z) is reachable from HEAD, so there is nothing to compare with;"
    echo "api-check: a release is tagged with 'git tag -a vX.Y.Z' (CONTRIBUTING.md), or name a ref: scripts/api-check.sh REF"
    exit 0
  fi
fi
git rev-parse --verify --quiet "$ref^{commit}" > /dev/null || { echo "api-check: '$ref' is not a commit here" >&2; exit 2; }
codegen="${BAZAAR_CODEGEN:-.build/debug/bazaar-codegen}"
if [ ! -x "$codegen" ]; then
  swift build --product bazaar-codegen 2>&1 | grep -E 'error|Build' | tail -3
fi
old=$(mktemp -d /tmp/bazaar-api-check.XXXXXX)
trap 'rm -rf "$old"' EXIT
git archive "$ref" proto | tar -x -C "$old"
echo "api-check: proto/ against $ref ($(git rev-parse --short "$ref^{commit}"))"
"$codegen" -I proto -I /usr/include --against "$old/proto"
