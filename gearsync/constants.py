"""Every name and default gearsync shares between modules, in one place.

Key prefixes in Redis, Gearman function names, the outbox's table, and the defaults of the
worker's settings. A module that needs one of these imports it from here; none is spelled
anywhere else (the SQL files and the C library keep their own copies, and tests compare them).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_GEARMAN_PORT", "DEFAULT_GEARMAN", "DEFAULT_REDIS_URL", "SEED_FUNCTION", "SAFE_FUNCTION",
    "DIRECT_FUNCTION", "OUTBOX_SCHEMA", "OUTBOX_TABLE", "KEY_PREFIX", "VERSION_PREFIX", "CHECKPOINT_PREFIX",
    "DEFAULT_TOMBSTONE_TTL", "RECORD_PREFIX", "DEFAULT_CONFIG_FILE", "DEFAULT_CHUNK", "DEAD_LETTERS",
    "DEAD_LETTERS_MAX", "APPLIED_AT", "LOCK_PREFIX", "DEFAULT_SENTINEL_PORT", "DEFAULT_REDIS_PORT",
]

# -- connections ---------------------------------------------------------------------------------
DEFAULT_GEARMAN_PORT = 4730
#: gearmand servers a worker listens on when nothing else is said.
DEFAULT_GEARMAN = "127.0.0.1:4730"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_REDIS_PORT = 6379
#: The port of a sentinel in a ``redis+sentinel://`` URL that names none.
DEFAULT_SENTINEL_PORT = 26379
#: The TOML file read when neither --config nor GEARSYNC_CONFIG names one (commands that need it).
DEFAULT_CONFIG_FILE = "gearsync.toml"

# -- Gearman functions ---------------------------------------------------------------------------
#: The seed's direct-mode function: workload {"id": …, "name": …}.
SEED_FUNCTION = "syncToRedis"
#: Safe-mode doorbells: the workload is an outbox id.
SAFE_FUNCTION = "gearsync"
#: Direct-mode jobs of configured tables (the triggers of ``gearsync install --mode direct``).
DIRECT_FUNCTION = "gearsync_direct"

# -- the database --------------------------------------------------------------------------------
OUTBOX_SCHEMA = "gearsync"
OUTBOX_TABLE = "outbox"

# -- Redis keys ----------------------------------------------------------------------------------
#: Every key gearsync keeps for itself starts with this; no mapped key may (see gearsync.keys).
KEY_PREFIX = b"gearsync:"
#: ``gearsync:v:<key>``: the version of a key written through the versioned script.
VERSION_PREFIX = KEY_PREFIX + b"v:"
#: ``gearsync:r:<target>:<row key>``: what a row placed in an extra target (gearsync.targets).
RECORD_PREFIX = KEY_PREFIX + b"r:"
#: ``gearsync:backfill:<schema.table>``: a backfill's checkpoint.
CHECKPOINT_PREFIX = KEY_PREFIX + b"backfill:"
#: A stream of the changes Redis refused for good (a WRONGTYPE, a script error): what they were
#: and why, for an operator to look at (``gearsync status`` counts them).
DEAD_LETTERS = KEY_PREFIX + b"dead"
#: Entries kept in it (XADD MAXLEN ~).
DEAD_LETTERS_MAX = 100_000
#: A hash: configured table → when (unix time) a worker last applied its changes.
APPLIED_AT = KEY_PREFIX + b"applied"
#: ``gearsync:lock:<what>``: held by one of many processes (a table's backfill, a refresh).
LOCK_PREFIX = KEY_PREFIX + b"lock:"

# -- defaults ------------------------------------------------------------------------------------
#: Seconds a delete's versioned tombstone stays in Redis.
DEFAULT_TOMBSTONE_TTL = 86400
#: Rows per chunk of a backfill or verify scan.
DEFAULT_CHUNK = 10000
