#!/bin/sh
# gearsync-redis-entrypoint: redis-server in the foreground as PID 1, as user redis, data in
# /var/lib/redis (append-only file). Environment: GEARSYNC_REDIS_PORT (6379),
# GEARSYNC_REDIS_BIND (127.0.0.1). Arguments are passed on to redis-server (e.g.
# --requirepass, or --appendonly no for a cache that may start empty).
set -eu
chown redis:redis /var/lib/redis
exec setpriv --reuid=redis --regid=redis --init-groups \
  redis-server --port "${GEARSYNC_REDIS_PORT:-6379}" --bind "${GEARSYNC_REDIS_BIND:-127.0.0.1}" \
  --dir /var/lib/redis --appendonly yes "$@"
