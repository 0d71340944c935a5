#!/usr/bin/env bash
# Make the MySQL server image the test suite runs against (`make test-mysql`), once: as root,
# idempotent, and instant when the image is there (a test run never rebuilds it).
#   1. Debian packages: podman runc debootstrap.
#   2. The base image localhost/gearsync-base:sid, made from Debian's own packages for machines
#      that reach no image registry: debootstrap --variant=minbase sid, then podman import.
#      GEARSYNC_MYSQL_BASE_IMAGE=debian:sid pulls one instead.
#   3. A probe container; where the kernel refuses to raise RLIMIT_NOFILE, podman's default
#      ulimits are turned off (/etc/containers/containers.conf.d/50-gearsync.conf), as
#      scripts/containers-setup.sh does (both through scripts/podman-lib.sh).
#   4. $GEARSYNC_MYSQL_IMAGE (default localhost/gearsync-mysql:sid) from
#      containers/mysql/Containerfile: mysql-server, libmysqlclient-dev, gcc, libgearman-dev.
#      The image is labelled with the Containerfile's hash and rebuilt only when it changed.
# Measured here (2 cores): about 4 minutes the first time, 0.1 s when the image exists.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${GEARSYNC_MYSQL_IMAGE:-localhost/gearsync-mysql:sid}
LOCAL_BASE=localhost/gearsync-base:sid
BASE_IMAGE=${GEARSYNC_MYSQL_BASE_IMAGE:-$LOCAL_BASE}
CONTAINERFILE=containers/mysql/Containerfile

say() { echo "gearsync mysql-image: $*"; }
die() { echo "gearsync mysql-image: $*" >&2; exit 1; }
. scripts/podman-lib.sh

recipe=$(sha256sum "$CONTAINERFILE" | cut -c1-16)
if command -v podman >/dev/null 2>&1 && podman image exists "$IMAGE" 2>/dev/null \
   && [ "$(podman image inspect --format '{{index .Labels "gearsync.recipe"}}' "$IMAGE")" = "$recipe" ]; then
  exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root: the MySQL test server runs in a rootful Podman container"

# -- 1. packages
apt_install podman runc debootstrap

# -- 2. base image
if ! podman image exists "$BASE_IMAGE"; then
  if [ "$BASE_IMAGE" = "$LOCAL_BASE" ]; then
    say "making $LOCAL_BASE from Debian's packages (debootstrap --variant=minbase sid, a minute or two)"
    rootfs=$(mktemp -d /var/tmp/gearsync-sid.XXXXXX)
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    if ! debootstrap --variant=minbase sid "$rootfs" ${DEBOOTSTRAP_MIRROR:-http://deb.debian.org/debian} \
         > "$rootfs.log" 2>&1; then
      tail -20 "$rootfs.log" >&2
      die "debootstrap failed (log above); DEBOOTSTRAP_MIRROR=URL picks another mirror"
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --message "debootstrap --variant=minbase sid" \
      --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
    trap - EXIT
  else
    say "pulling $BASE_IMAGE"
    podman pull -q "$BASE_IMAGE" >/dev/null || die "cannot pull $BASE_IMAGE; leave GEARSYNC_MYSQL_BASE_IMAGE unset to make $LOCAL_BASE here"
  fi
fi

# -- 3. probe
podman_probe "$BASE_IMAGE"

# -- 4. the MySQL image
say "building $IMAGE from $CONTAINERFILE (mysql-server from Debian unstable, a few minutes)"
podman build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" --label gearsync.recipe="$recipe" \
  -f "$CONTAINERFILE" -t "$IMAGE" containers/mysql
say "ready: $IMAGE ($(podman run --rm --network host "$IMAGE" mysqld --version))"
