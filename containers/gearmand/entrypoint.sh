#!/bin/sh
# gearsync-gearmand-entrypoint: gearmand in the foreground as PID 1, as user gearman, with its
# queue in /var/lib/gearman/queue.db (SQLite), written when it shuts down on SIGTERM and read
# back at start. A crash (SIGKILL) loses what was queued since the last clean stop: safe mode
# does not mind (the outbox keeps every change until it is applied); direct mode does.
# Environment: GEARSYNC_GEARMAND_PORT (4730), GEARSYNC_GEARMAND_BIND (127.0.0.1),
# GEARSYNC_GEARMAND_BUCKETS (262139 hash buckets: a deep queue stays fast, see README).
# Arguments are passed on to gearmand.
set -eu
chown gearman:gearman /var/lib/gearman
exec gearmand --user gearman \
  --listen "${GEARSYNC_GEARMAND_BIND:-127.0.0.1}" --port "${GEARSYNC_GEARMAND_PORT:-4730}" \
  --queue-type libsqlite3 --libsqlite3-db /var/lib/gearman/queue.db --store-queue-on-shutdown \
  --hashtable-buckets "${GEARSYNC_GEARMAND_BUCKETS:-262139}" \
  --log-file stderr --verbose WARNING "$@"
