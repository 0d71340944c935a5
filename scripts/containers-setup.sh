#!/usr/bin/env bash
# Prepare this machine to build and run gearsync's containers with Podman, as root; what
# `make images` and `make test-containers` run first. Idempotent, and quick once done:
#   1. Debian packages: podman runc debootstrap, and systemd (for systemd-analyze).
#   2. The base image $GEARSYNC_BASE_IMAGE (default localhost/gearsync-base:bookworm). The
#      default is made here from Debian's own packages, for machines that reach no image
#      registry: debootstrap --variant=minbase bookworm, then podman import. Any other name
#      (e.g. debian:bookworm) is pulled from a registry if it is not there yet.
#   3. A probe container. Where the kernel refuses to raise RLIMIT_NOFILE (this kind of VM:
#      "error setting rlimit type 7: operation not permitted"), podman's default ulimits are
#      turned off in /etc/containers/containers.conf.d/50-gearsync.conf, then it probes again.
#   4. The host's extra CA certificates (/usr/local/share/ca-certificates) copied into
#      containers/ca-certificates/, for pip in the worker's build stage behind an HTTPS proxy.
#   5. podman-compose and pytest-docker in $VENV (the `containers` extra of pyproject.toml).
# `scripts/containers-setup.sh --systemd-only` does the systemd part of step 1 alone.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
BASE_IMAGE=${GEARSYNC_BASE_IMAGE:-localhost/gearsync-base:bookworm}
LOCAL_BASE=localhost/gearsync-base:bookworm

say() { echo "gearsync containers-setup: $*"; }
die() { echo "gearsync containers-setup: $*" >&2; exit 1; }

. scripts/podman-lib.sh

if [ "${1:-}" = "--systemd-only" ]; then
  command -v systemd-analyze >/dev/null || apt_install systemd
  exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root: gearsync's containers are built and run with rootful Podman"
command -v systemd-analyze >/dev/null || apt_install systemd
apt_install podman runc debootstrap

# -- 2. base image
if ! podman image exists "$BASE_IMAGE"; then
  if [ "$BASE_IMAGE" = "$LOCAL_BASE" ]; then
    say "making $LOCAL_BASE from Debian's packages (debootstrap --variant=minbase bookworm, about a minute)"
    rootfs=$(mktemp -d /var/tmp/gearsync-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    if ! debootstrap --variant=minbase bookworm "$rootfs" ${DEBOOTSTRAP_MIRROR:-} > "$rootfs.log" 2>&1; then
      tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"
      die "debootstrap failed (full log above); DEBOOTSTRAP_MIRROR=URL picks another mirror"
    fi
    rm -f "$rootfs.log"
    # The host's own Debian sources (same mirror, with -updates and -security) when it is a
    # bookworm host; debootstrap's single line otherwise.
    if grep -qs 'bookworm' /etc/apt/sources.list.d/debian.sources; then
      cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
      rm -f "$rootfs/etc/apt/sources.list"
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --message "debootstrap --variant=minbase bookworm" \
      --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
  else
    say "pulling $BASE_IMAGE"
    podman pull -q "$BASE_IMAGE" >/dev/null || die "cannot pull $BASE_IMAGE; without a registry leave GEARSYNC_BASE_IMAGE unset ($LOCAL_BASE is then made here)"
  fi
fi

# -- 3. probe
podman_probe "$BASE_IMAGE"

# -- 4. extra CA certificates for the worker's build stage
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$crt" ] || continue
  cmp -s "$crt" "containers/ca-certificates/$(basename "$crt")" || cp "$crt" containers/ca-certificates/
done

# -- 5. podman-compose and pytest-docker
[ -x "$VENV/bin/python" ] || die "$VENV is missing: run \`make setup\` first"
stamp="$VENV/.gearsync-containers-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing podman-compose and pytest-docker into $VENV"
  "$VENV/bin/pip" install -q -e '.[test,containers]'
  touch "$stamp"
fi

say "ready: $(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}'), base $BASE_IMAGE, $("$VENV/bin/podman-compose" --version 2>/dev/null | sed -n 1p)"
