"""The Redis keys gearsync derives: versions, checkpoints, locks, and globs of key templates,
and the Redis Cluster slot of a key.

Every key gearsync keeps for itself lives under :data:`gearsync.constants.KEY_PREFIX`
(``gearsync:``); :func:`reserved` says whether a key is one of them.

**Cluster slots** (the Redis Cluster specification, "Keys hash tags"): a key's slot is
CRC16(XMODEM) of its *hash tag* mod 16384, where the hash tag is what lies between the key's
first ``{`` and the first ``}`` after it, when that is not empty; otherwise the whole key.
The versioned script touches a key and its version key in one call, so in a cluster both must
share a slot. :func:`version_key` with ``tagged=True`` (what a cluster client uses) gives:

* ``gearsync:v:{<key>}`` when the key is not empty and has no ``}`` (so it has no hash tag of
  its own, and the braces make the whole key the version key's tag);
* ``gearsync:v:{<tag>}:<key>`` otherwise, where ``<tag>`` is the key's own hash tag when it has
  one, else (an empty key, or a ``}`` without a valid tag before it) :func:`slot_tag` of the
  key's slot: the smallest decimal number that hashes to that slot.

Both forms put a non-empty tag without ``}`` right after the prefix (which has no brace), so
the version key hashes to the key's slot; the map is one-to-one (the first form ends at its
only ``}``, the second continues after ``}:``, and each holds the whole key). Single Redis and
Sentinel keep the untagged ``gearsync:v:<key>`` (see the README, Scale-out).
"""

from __future__ import annotations

import binascii
import string

from .constants import CHECKPOINT_PREFIX, KEY_PREFIX, LOCK_PREFIX, RECORD_PREFIX, VERSION_PREFIX

__all__ = ["version_key", "record_key", "record_pattern", "checkpoint_key", "lock_key", "reserved", "glob_escape",
           "key_pattern", "hash_tag", "key_slot", "slot_tag", "SLOTS"]

#: Hash slots of a Redis Cluster.
SLOTS = 16384


def _bytes(key: bytes | str) -> bytes:
    return key.encode("utf-8", "surrogatepass") if isinstance(key, str) else bytes(key)


def hash_tag(key: bytes | str) -> bytes | None:
    """The part of ``key`` Redis Cluster hashes when it is not the whole key: between the first
    ``{`` and the first ``}`` after it, if not empty; None when the key has no such tag."""
    k = _bytes(key)
    start = k.find(b"{")
    if start < 0:
        return None
    end = k.find(b"}", start + 1)
    if end <= start + 1:
        return None
    return k[start + 1:end]


def key_slot(key: bytes | str) -> int:
    """The Redis Cluster slot of ``key`` (what ``CLUSTER KEYSLOT`` answers)."""
    k = _bytes(key)
    tag = hash_tag(k)
    return binascii.crc_hqx(k if tag is None else tag, 0) % SLOTS


_SLOT_TAGS: list[bytes] = []


def slot_tag(slot: int) -> bytes:
    """The smallest decimal number (as text) whose slot is ``slot``: a hash tag for any slot.
    The table is built once, on first use (about 0.1 s)."""
    if not _SLOT_TAGS:
        table: list[bytes | None] = [None] * SLOTS
        missing, n = SLOTS, 0
        while missing:
            text = b"%d" % n
            s = binascii.crc_hqx(text, 0) % SLOTS
            if table[s] is None:
                table[s] = text
                missing -= 1
            n += 1
        _SLOT_TAGS.extend(t for t in table if t is not None)
    return _SLOT_TAGS[slot]


def version_key(key: bytes | str, tagged: bool = False) -> bytes:
    """The key holding the version of ``key``: ``gearsync:v:<key>``; with ``tagged`` (a
    cluster) a key of the same slot, see the module's docstring."""
    k = _bytes(key)
    if not tagged:
        return VERSION_PREFIX + k
    if k and b"}" not in k:
        return VERSION_PREFIX + b"{" + k + b"}"
    tag = hash_tag(k)
    if tag is None:
        tag = slot_tag(key_slot(k))
    return VERSION_PREFIX + b"{" + tag + b"}:" + k


def lock_key(what: str) -> bytes:
    """A lock held by one process of many (``gearsync:lock:<what>``), e.g. a table's backfill."""
    return LOCK_PREFIX + _bytes(what)


def record_key(target: bytes, row_key: bytes | str) -> bytes:
    """The record of what the row whose key is ``row_key`` placed in the extra target ``target``
    (its id, see gearsync.targets): ``gearsync:r:<target>:<row key>``, a hash of version ``v``,
    key ``k``, member ``m``, stream entry id ``i``."""
    return RECORD_PREFIX + target + b":" + _bytes(row_key)


def record_pattern(target: bytes) -> bytes:
    """The glob of every record of ``target``."""
    return glob_escape(RECORD_PREFIX + target + b":") + b"*"


def checkpoint_key(table: str, part: str | None = None) -> bytes:
    """A backfill's checkpoint of ``table`` (``schema.table``); ``part`` names one partition
    of a parallel backfill (``"0"``, ``"1"``, …) or its ``"plan"``."""
    key = CHECKPOINT_PREFIX + _bytes(table)
    return key if part is None else key + b"#" + part.encode()


_KEY_PREFIX_STR = KEY_PREFIX.decode("ascii")


def reserved(key: bytes | str) -> bool:
    """True for keys gearsync keeps for itself (versions, tombstones, checkpoints, locks)."""
    if type(key) is str:  # the prefix is ASCII: the same test without encoding (once a job)
        return key.startswith(_KEY_PREFIX_STR)
    return _bytes(key).startswith(KEY_PREFIX)


def glob_escape(text: bytes) -> bytes:
    """``text`` as a literal in a Redis glob (``*?[]\\`` escaped)."""
    out = bytearray()
    for b in text:
        if b in b"*?[]\\":
            out.append(0x5C)
        out.append(b)
    return bytes(out)


def key_pattern(template: str) -> bytes:
    """The glob that matches every key of a key template (``order:{shop_id}:{id}`` → ``order:*:*``)."""
    out: list[bytes] = []
    for literal, fname, _spec, _conv in string.Formatter().parse(template):
        out.append(glob_escape(_bytes(literal)))
        if fname is not None:
            out.append(b"*")
    return b"".join(out)
