#!/usr/bin/env bash
# Installs the Debian packages Bazaar builds, tests and runs with.
# Idempotent: packages already present are not touched, and apt-get update
# runs only when something is actually missing.
set -euo pipefail

PACKAGES=(
  # C engines the product links (one .systemLibrary target each)
  libprotobuf-c-dev libnghttp2-dev libssl-dev libevent-dev libpq-dev
  libhiredis-dev libargon2-dev zlib1g-dev libhttp-parser-dev pkg-config
  # test peers and corpora
  protobuf-c-compiler grpc-proto libprotobuf-dev python3-venv nghttp2-client dnsmasq-base prometheus
  # benchmark peers (wrk drives the gateway benchmark)
  wrk
  # data stores the tests run as plain processes (their packaged services are never started)
  postgresql-15 redis-server
  # the browser the storefront's tests drive (with Selenium from PyPI)
  chromium chromium-driver fonts-dejavu-core
  # the SMTP sink `make up` runs for the notifications service
  python3-aiosmtpd
  # tooling
  valgrind
  # the container image: podman and buildah build and run it (runc; no Docker engine),
  # debootstrap makes its Debian base without a registry
  podman buildah runc debootstrap
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
