#!/usr/bin/env bash
# Bootstrap what gearsync needs on Debian/Ubuntu: system packages (as root, only those
# missing), then a .venv with the package and its test tools. Idempotent and quick when
# nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
PACKAGES=(
  mariadb-server mariadb-client
  gearman-job-server gearman-tools libgearman-dev
  libmariadb-dev libmariadb-dev-compat libmariadbd-dev
  redis-server
  build-essential pkg-config binutils strace valgrind
  chromium stunnel4
  python3-venv python3-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "gearsync setup: missing Debian packages: ${missing[*]}" >&2
    echo "run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "gearsync setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep package scripts from starting the system services: gearsync runs its own daemons.
  policy_made=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_made=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$policy_made" ] && rm -f /usr/sbin/policy-rc.d
fi

stamp="$VENV/.gearsync-installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "gearsync setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  echo "gearsync setup: installing gearsync and its test tools into $VENV"
  "$VENV/bin/pip" install -q -e '.[test]'
  touch "$stamp"
fi
