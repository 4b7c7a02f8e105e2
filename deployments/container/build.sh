#!/usr/bin/env bash
# Builds the Bazaar image with podman on this machine (no Docker engine, no registry): a release
# binary built on the host, then the Dockerfile's `prebuilt` target on a debootstrap base.
#   deployments/container/build.sh [TAG]      (default localhost/bazaar:dev)
# Docker users build the whole thing in containers instead:
#   docker build -f deployments/container/Dockerfile -t bazaar .
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-localhost/bazaar:dev}
case "$TAG" in -h|--help) sed -n 2,6p "$0"; exit 0 ;; esac
. deployments/container/env.sh

echo "image: building the release binary (Swift runtime linked statically)"
swift build -c release --product bazaar --static-swift-stdlib --scratch-path .build-image 2>&1 \
  | grep -E 'error|Compiling|Build' | tail -2
mkdir -p .build-image/image
strip -o .build-image/image/bazaar .build-image/release/bazaar

bash deployments/container/mkbase.sh
echo "image: podman build --target prebuilt -t $TAG"
podman build --quiet --target prebuilt --build-arg BASE_IMAGE=localhost/bazaar-base:bookworm \
  -f deployments/container/Dockerfile -t "$TAG" . > /dev/null
echo "image: $TAG ($(podman image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
