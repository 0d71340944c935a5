#!/bin/bash
# gearsync-db-entrypoint: start MariaDB with the gearsync UDFs, installing them first if needed.
#
# Every start: writes /etc/mysql/gearsync_udf.cnf from GEARSYNC_GEARMAN (where the triggers
# send their jobs; the library reads it through GEARSYNC_UDF_CONFIG, so the list survives
# restarts), then execs mariadbd in the foreground (it is PID 1 and gets podman's SIGTERM).
# First start (or a new gearsync version in the image): initialises the datadir if it is
# empty, then, on a server without networking, applies /usr/share/gearsync/install.sql and
# creates the worker's account (GEARSYNC_DB_WORKER_USER@GEARSYNC_DB_WORKER_HOST identified by
# GEARSYNC_DB_WORKER_PASSWORD, SELECT and DELETE on gearsync.outbox). root stays a socket-only
# account (unix_socket authentication): `podman exec <db> mariadb` is root.
#
# Environment: GEARSYNC_DB_PORT (3306), GEARSYNC_DB_BIND (127.0.0.1), GEARSYNC_GEARMAN
# (127.0.0.1:4730), GEARSYNC_DB_WORKER_USER (gearsync), GEARSYNC_DB_WORKER_HOST (127.0.0.1),
# GEARSYNC_DB_WORKER_PASSWORD (required at install). Arguments are passed on to mariadbd.
set -euo pipefail

datadir=/var/lib/mysql
share=/usr/share/gearsync
version=$(cat "$share/VERSION")
marker="$datadir/gearsync-installed"
init_socket=/run/mysqld/init.sock

log() { echo "gearsync-db: $*" >&2; }
die() { log "$*"; exit 1; }

servers=${GEARSYNC_GEARMAN:-127.0.0.1:4730}
cnf=/etc/mysql/gearsync_udf.cnf
printf '# written by gearsync-db-entrypoint from GEARSYNC_GEARMAN at every start\nservers = %s\n' \
  "$servers" > "$cnf"
export GEARSYNC_UDF_CONFIG=$cnf

install -d -o mysql -g mysql -m 0755 /run/mysqld
chown mysql:mysql "$datadir"

if [ ! -d "$datadir/mysql" ]; then
  log "initialising $datadir"
  if ! out=$(mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
               --auth-root-authentication-method=socket 2>&1); then
    die "mariadb-install-db failed: $out"
  fi
fi

# SQL string literal: backslashes and quotes doubled.
sql_quote() { local s=${1//\\/\\\\}; s=${s//\'/\'\'}; printf "'%s'" "$s"; }

if [ "$(cat "$marker" 2>/dev/null || true)" != "$version" ]; then
  [ -n "${GEARSYNC_DB_WORKER_PASSWORD:-}" ] \
    || die "set GEARSYNC_DB_WORKER_PASSWORD: the worker's database password, needed to install"
  log "installing gearsync $version (sql/install.sql, worker account) on a server without networking"
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$init_socket" \
    --pid-file=/run/mysqld/init.pid --skip-log-bin &
  pid=$!
  for _ in $(seq 1 240); do
    mariadb-admin --socket="$init_socket" ping >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || die "mariadbd exited during installation"
    sleep 0.25
  done
  mariadb-admin --socket="$init_socket" ping >/dev/null 2>&1 || die "mariadbd did not start in 60 s"
  mariadb --socket="$init_socket" < "$share/install.sql" >/dev/null
  account="$(sql_quote "${GEARSYNC_DB_WORKER_USER:-gearsync}")@$(sql_quote "${GEARSYNC_DB_WORKER_HOST:-127.0.0.1}")"
  password=$(sql_quote "$GEARSYNC_DB_WORKER_PASSWORD")
  mariadb --socket="$init_socket" <<SQL
CREATE USER IF NOT EXISTS $account IDENTIFIED BY $password;
ALTER USER $account IDENTIFIED BY $password;
GRANT SELECT, DELETE ON gearsync.outbox TO $account;
SQL
  mariadb-admin --socket="$init_socket" shutdown
  wait "$pid" || true
  echo "$version" > "$marker"
  log "installed"
fi

log "starting mariadbd on ${GEARSYNC_DB_BIND:-127.0.0.1}:${GEARSYNC_DB_PORT:-3306}, jobs to $servers"
exec mariadbd --user=mysql --datadir="$datadir" --port="${GEARSYNC_DB_PORT:-3306}" \
  --bind-address="${GEARSYNC_DB_BIND:-127.0.0.1}" --skip-name-resolve "$@"
