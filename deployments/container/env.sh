# Source me: podman and buildah settings that work without systemd or overlay mounts.
#   . deployments/container/env.sh
# Storage is vfs under $BAZAAR_CONTAINERS (default /var/tmp/bazaar-containers); RUN steps are
# isolated with chroot.
_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BAZAAR_CONTAINERS=${BAZAAR_CONTAINERS:-/var/tmp/bazaar-containers}
mkdir -p "$BAZAAR_CONTAINERS"
cat > "$BAZAAR_CONTAINERS/storage.conf" <<CONF
[storage]
driver = "vfs"
runroot = "$BAZAAR_CONTAINERS/runroot"
graphroot = "$BAZAAR_CONTAINERS/root"
CONF
export CONTAINERS_CONF="$_here/podman/containers.conf"
export CONTAINERS_STORAGE_CONF="$BAZAAR_CONTAINERS/storage.conf"
export BUILDAH_ISOLATION=chroot
export BAZAAR_CONTAINERS
unset _here
