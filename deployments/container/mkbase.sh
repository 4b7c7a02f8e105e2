#!/usr/bin/env bash
# Makes the image's Debian base with debootstrap (no registry needed) and imports it into podman
# as localhost/bazaar-base:bookworm. The base already holds the runtime libraries the Dockerfile
# asks for, so building the image needs no network. Needs root, debootstrap and podman.
#   deployments/container/mkbase.sh [--force]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
TAG=${BASE_TAG:-localhost/bazaar-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Keep in step with the runtime-base stage of the Dockerfile. BASE_TAG and EXTRA_PACKAGES make
# other bases the same way (deployments/compose/local-images/build.sh).
PACKAGES=ca-certificates,tzdata,libprotobuf-c1,libnghttp2-14,libssl3,libevent-2.1-7,libevent-pthreads-2.1-7,libpq5,libhiredis0.14,libargon2-1,zlib1g,libhttp-parser2.9,libstdc++6${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}

case "${1:-}" in
  -h|--help) sed -n 2,6p "$0"; exit 0 ;;
  --force) ;;
  "") if podman image exists "$TAG"; then echo "mkbase: $TAG exists"; exit 0; fi ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "mkbase: debootstrap needs root" >&2; exit 1; }

root=$(mktemp -d /var/tmp/bazaar-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "mkbase: debootstrap bookworm (minbase + runtime libraries) from $MIRROR"
start=$SECONDS
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" > "$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; rm -f "$root.log"; echo "mkbase: debootstrap failed" >&2; exit 1; }
rm -f "$root.log"
# What an image does not need: package caches, lists and documentation.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
       "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*
chmod 0755 "$root"  # mktemp made it 0700: it becomes the image's /
tar -C "$root" -c . | podman import --quiet - "$TAG" > /dev/null
echo "mkbase: $TAG imported ($(( SECONDS - start )) s)"
