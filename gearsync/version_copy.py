"""``gearsync versions copy --from URL``: the versions of one Redis, written into another in the
form that one needs — for the move from one Redis (or Sentinel) to a Redis Cluster.

One Redis keeps a key's version in ``gearsync:v:<key>``; a cluster needs it in the key's slot,
``gearsync:v:{<key>}`` (gearsync.keys.version_key). Copying the data of a Redis into a cluster
(``redis-cli --cluster import``, a replica's dump…) brings the old names along, where the
versioned script does not look; without this copy a tombstone would be forgotten (an older
change could bring a deleted key back) and backfill would overwrite keys that live changes
wrote. Run it once, after the data was copied and before the cluster's workers start (it is
safe beside them too: a version is only written where the target has none, or an older one).

Each version keeps its remaining time to live (tombstones expire as they would have). A
version that is not a number (written by hand) is left out and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .constants import VERSION_PREFIX
from .keys import glob_escape, version_key
from .redis_clients import is_cluster, sync_client

__all__ = ["copy_versions", "CopyResult"]

log = logging.getLogger(__name__)

#: KEYS[1] the version key; ARGV: the version, its time to live in ms (0: none). 1 written, 0 kept
#: (the target has this version or a newer one).
_COPY = """
local cur = tonumber(redis.call('GET', KEYS[1]))
if cur and cur >= tonumber(ARGV[1]) then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


@dataclass
class CopyResult:
    found: int = 0       # versions in the source
    copied: int = 0      # written into the target
    kept: int = 0        # the target had this version or a newer one
    skipped: int = 0     # not a number, or expired while copying

    def __str__(self) -> str:
        return (f"{self.found} versions found, {self.copied} copied, {self.kept} kept (the target had a newer one), "
                f"{self.skipped} skipped (not a number, or expired)")


def copy_versions(source_url: str, target_url: str, *, batch: int = 1000) -> CopyResult:
    """Copy every ``gearsync:v:<key>`` of the Redis at ``source_url`` (one Redis or a Sentinel
    primary) into ``target_url`` under the target's form of the version key."""
    source = sync_client(source_url)
    target = sync_client(target_url)
    try:
        if is_cluster(source):
            raise ValueError("the source must be one Redis or a Sentinel primary: a cluster's versions are "
                             "already in the form a cluster needs")
        tagged = is_cluster(target)
        sha = str(target.script_load(_COPY))
        res = CopyResult()
        names: list[bytes] = []
        for name in source.scan_iter(match=glob_escape(VERSION_PREFIX) + b"*", count=batch):
            names.append(name)
            if len(names) >= batch:
                _copy(source, target, sha, names, tagged, res)
                names = []
        _copy(source, target, sha, names, tagged, res)
        log.info("versions copy: %s", res)
        return res
    finally:
        source.close()
        target.close()


def _copy(source: Any, target: Any, sha: str, names: list[bytes], tagged: bool, res: CopyResult) -> None:
    if not names:
        return
    pipe = source.pipeline(transaction=False)
    for n in names:
        pipe.get(n)
        pipe.pttl(n)
    got = pipe.execute()
    out = target.pipeline(transaction=False)
    sent = 0
    for i, n in enumerate(names):
        res.found += 1
        value, ttl = got[2 * i], got[2 * i + 1]
        if value is None or ttl == -2 or not value.isdigit():
            res.skipped += 1
            continue
        out.execute_command("EVALSHA", sha, 1, version_key(n[len(VERSION_PREFIX):], tagged), value, max(0, int(ttl)))
        sent += 1
    if sent:
        answers = out.execute()
        res.copied += sum(1 for a in answers if int(a) == 1)
        res.kept += sum(1 for a in answers if int(a) == 0)
