#!/usr/bin/env bash
# Builds the local stand-ins for compose.yaml's PostgreSQL, Redis and mail images with podman:
# localhost/bazaar-compose-{postgres,redis,mail}:dev, on a debootstrap base that holds their
# Debian packages (mkbase.sh).
# Packages come from Debian's mirror; no image registry is needed.
#   deployments/compose/local-images/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in -h|--help) sed -n 2,6p "$0"; exit 0 ;; "") ;; *) echo "usage: $0" >&2; exit 2 ;; esac
. "$here/../../container/env.sh"
# The packages go in with debootstrap (a minute), not with apt inside a build (several, on vfs).
BASE_TAG=localhost/bazaar-compose-base:bookworm EXTRA_PACKAGES=postgresql-15,redis-server,python3-aiosmtpd \
  bash "$here/../../container/mkbase.sh"
for target in postgres redis mail; do
  podman build --quiet --layers --target "$target" -f "$here/Containerfile" -t "localhost/bazaar-compose-$target:dev" \
    "$here" > /dev/null
  echo "local-images: localhost/bazaar-compose-$target:dev"
done
