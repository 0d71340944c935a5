# Shared by scripts/containers-setup.sh and scripts/mysql-image.sh (sourced; the caller defines
# say and die first): Debian packages, and a probe that makes rootful Podman start a container.

# apt_install PACKAGE...: install what is missing (as root), without starting any service.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]}; run as root: apt-get install -y ${missing[*]}"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local policy_made=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_made=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy_made" ]; then rm -f /usr/sbin/policy-rc.d; fi
}

# podman_probe IMAGE: start a container of IMAGE; where the kernel refuses to raise
# RLIMIT_NOFILE (this kind of VM: "error setting rlimit type 7: operation not permitted"),
# turn podman's default ulimits off in /etc/containers/containers.conf.d/50-gearsync.conf and
# probe again.
podman_probe() {
  local image=$1 dropin=/etc/containers/containers.conf.d/50-gearsync.conf out
  if out=$(podman run --rm --network host "$image" true 2>&1); then
    return 0
  fi
  grep -q 'rlimit' <<<"$out" && [ ! -e "$dropin" ] || die "a container does not start: $out"
  say "this kernel refuses podman's default ulimits; writing $dropin (default_ulimits = [])"
  mkdir -p "$(dirname "$dropin")"
  printf '%s\n' "# gearsync (scripts/podman-lib.sh): containers keep the host's ulimits; raising" \
    "# RLIMIT_NOFILE fails here (\"error setting rlimit type 7: operation not permitted\")." \
    "[containers]" "default_ulimits = []" > "$dropin"
  out=$(podman run --rm --network host "$image" true 2>&1) \
    || die "a container does not start even with $dropin: $out"
}
