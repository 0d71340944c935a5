"""Everything about ``versioned.lua``, the one script every versioned write goes through.

The script (loaded once per client with SCRIPT LOAD, called with EVALSHA, :data:`CHUNK`
changes per call) writes a key only as its mode says — ``v`` (safe mode: the stored version
must be absent or lower), ``nx`` (backfill: no version stored), ``cas`` (repair: the version
is still the one read), ``w`` (unconditional) — and keeps the key's version in
:func:`gearsync.keys.version_key`. See the script's header for its arguments.

Two encoders of one call, kept equal by a test: :func:`script_args` (KEYS and ARGV for
redis-py, the worker's asyncio pipeline) and :func:`pack_call` (the whole EVALSHA as RESP
bytes, for :class:`ScriptRunner`: backfill and repair, where redis-py's per-argument cost
was half of a backfill's time).
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Sequence

from redis.exceptions import NoScriptError, ResponseError

from .changes import VersionedChange
from .constants import DEFAULT_TOMBSTONE_TTL
from .keys import version_key

__all__ = ["LUA", "CHUNK", "MODES", "vkey", "script_args", "pack_call", "ScriptRunner", "STALE", "APPLIED", "CORRUPT",
           "RESERVED"]

LUA = resources.files(__package__).joinpath("versioned.lua").read_text(encoding="utf-8")
#: Changes per EVALSHA call (all calls of a batch share one pipeline).
CHUNK = 256
MODES = ("v", "nx", "cas", "w")
#: The script's answer per change.
STALE, APPLIED, CORRUPT, RESERVED = 0, 1, 2, 3


def _version(c: VersionedChange, mode: str) -> bytes:
    if isinstance(c.version, bytes):  # repair: the stored text, "!"-prefixed to reset a corrupt one
        return c.version
    return b"" if mode == "cas" and not c.version else b"%d" % c.version


def vkey(c: VersionedChange) -> bytes:
    """The key holding ``c``'s version: its placement's record, else :func:`version_key`."""
    return c.record if c.record is not None else version_key(c.key)


def script_args(changes: Sequence[VersionedChange], tombstone_ttl: int,
                mode: str = "v") -> tuple[list[bytes], list[Any]]:
    """KEYS and ARGV of one ``versioned.lua`` call."""
    keys: list[bytes] = []
    argv: list[Any] = [tombstone_ttl, mode]
    for c in changes:
        keys += (c.key, vkey(c))
        ver = _version(c, mode)
        ttl = c.ttl or 0
        if c.op is not None and c.op != b"j":
            argv += (ver, c.op, ttl, len(c.args), *c.args)
        elif c.op == b"j":
            argv += (ver, b"j", ttl, 1, c.value or b"")
        elif c.hash is not None:
            argv += (ver, b"h", ttl, 2 * len(c.hash))
            for f, v in c.hash.items():
                argv += (f, v)
        elif c.value is None:
            argv += (ver, b"d", ttl, 0)
        else:
            argv += (ver, b"s", ttl, 1, c.value)
    return keys, argv


def _bulk(a: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(a), a)


def pack_call(sha: bytes, changes: Sequence[VersionedChange], tombstone_ttl: int, mode: str) -> bytes:
    """One ``EVALSHA`` as RESP bytes: the call :func:`script_args` describes, packed without
    redis-py (literal fragments for the fixed arguments)."""
    keys: list[bytes] = []
    argv: list[bytes] = [_bulk(b"%d" % tombstone_ttl), _bulk(mode.encode())]
    nargs = 2
    for c in changes:
        k = bytes(c.key)
        keys.append(_bulk(k))
        keys.append(_bulk(vkey(c)))
        ver = _version(c, mode)
        ttl = b"%d" % (c.ttl or 0)
        if c.op is not None:
            args = c.args if c.op != b"j" else (c.value or b"",)
            argv.append(_bulk(ver) + _bulk(c.op) + _bulk(ttl) + _bulk(b"%d" % len(args)))
            argv += [_bulk(x) for x in args]
            nargs += 4 + len(args)
        elif c.hash is not None:
            argv.append(_bulk(ver) + b"$1\r\nh\r\n" + _bulk(ttl) + _bulk(b"%d" % (2 * len(c.hash))))
            argv += [_bulk(f) + _bulk(v) for f, v in c.hash.items()]
            nargs += 4 + 2 * len(c.hash)
        elif c.value is None:
            argv.append(_bulk(ver) + b"$1\r\nd\r\n" + _bulk(ttl) + b"$1\r\n0\r\n")
            nargs += 4
        else:
            argv.append(_bulk(ver) + b"$1\r\ns\r\n" + _bulk(ttl) + b"$1\r\n1\r\n" + _bulk(c.value))
            nargs += 5
    nkeys = len(keys)
    head = b"*%d\r\n$7\r\nEVALSHA\r\n%s%s" % (3 + nkeys + nargs, _bulk(sha), _bulk(b"%d" % nkeys))
    return head + b"".join(keys) + b"".join(argv)


class ScriptRunner:
    """``versioned.lua`` through a synchronous Redis client (backfill and repair): one pipeline
    of pre-packed EVALSHA calls per chunk."""

    def __init__(self, client: Any, tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL) -> None:
        self.redis = client
        self.ttl = tombstone_ttl
        self.sha = str(client.script_load(LUA))

    def send(self, changes: Sequence[VersionedChange], mode: str, extra: Sequence[Sequence[Any]] = ()
             ) -> tuple[Any, Sequence[VersionedChange], str, Sequence[Sequence[Any]], int]:
        """Send the calls for ``changes`` (then ``extra`` commands such as ``("SET", k, v)``)
        without waiting; :meth:`collect` reads the answers. Meanwhile the caller can prepare
        the next chunk while Redis runs this one."""
        sha = self.sha.encode()
        packed = [pack_call(sha, changes[i:i + CHUNK], self.ttl, mode) for i in range(0, len(changes), CHUNK)]
        conn = self.redis.connection_pool.get_connection()
        try:
            conn.send_packed_command(packed + [conn.pack_command(*cmd)[0] for cmd in extra])
        except BaseException:
            conn.disconnect()
            self.redis.connection_pool.release(conn)
            raise
        return conn, changes, mode, extra, len(packed)

    def collect(self, handle: tuple[Any, Sequence[VersionedChange], str, Sequence[Sequence[Any]], int],
                retry: bool = True) -> list[int]:
        """Per change the script's answer (:data:`APPLIED`, :data:`STALE`, :data:`CORRUPT`,
        :data:`RESERVED`); raises the first error Redis answered (a script forgotten by a
        restarted Redis is loaded again and the calls re-sent once)."""
        conn, changes, mode, extra, n = handle
        replies: list[Any] = []
        try:
            for _ in range(n + len(extra)):
                try:
                    replies.append(conn.read_response())
                except ResponseError as e:
                    replies.append(e)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self.redis.connection_pool.release(conn)
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            if retry and all(isinstance(e, NoScriptError) for e in errors):
                self.sha = str(self.redis.script_load(LUA))
                return self.collect(self.send(changes, mode, extra), retry=False)
            raise errors[0]
        return [int(x) for reply in replies[:n] for x in reply]

    def run(self, changes: Sequence[VersionedChange], mode: str, extra: Sequence[Sequence[Any]] = ()
            ) -> list[int]:
        """:meth:`send` then :meth:`collect`."""
        return self.collect(self.send(changes, mode, extra))
