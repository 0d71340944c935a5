"""The Redis keys gearsync derives: versions, checkpoints, and globs of key templates.

Every key gearsync keeps for itself lives under :data:`gearsync.constants.KEY_PREFIX`
(``gearsync:``); :func:`reserved` says whether a key is one of them.
"""

from __future__ import annotations

import string

from .constants import CHECKPOINT_PREFIX, KEY_PREFIX, RECORD_PREFIX, VERSION_PREFIX

__all__ = ["version_key", "record_key", "record_pattern", "checkpoint_key", "reserved", "glob_escape",
           "key_pattern"]


def _bytes(key: bytes | str) -> bytes:
    return key.encode("utf-8", "surrogatepass") if isinstance(key, str) else bytes(key)


def version_key(key: bytes | str) -> bytes:
    """The key holding the version of ``key``: ``gearsync:v:<key>``."""
    return VERSION_PREFIX + _bytes(key)


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


def reserved(key: bytes | str) -> bool:
    """True for keys gearsync keeps for itself (versions, tombstones, checkpoints)."""
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
