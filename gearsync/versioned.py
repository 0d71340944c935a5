"""Everything about ``versioned.lua``, the one script every versioned write goes through.

The script (loaded once per client with SCRIPT LOAD, called with EVALSHA, :data:`CHUNK`
changes per call) writes a key only as its mode says — ``v`` (safe mode: the stored version
must be absent or lower), ``nx`` (backfill: no version stored), ``cas`` (repair: the version
is still the one read), ``w`` (unconditional) — and keeps the key's version in
:func:`gearsync.keys.version_key`. See the script's header for its arguments.

Two encoders of one call, kept equal by a test: :func:`script_args` (KEYS and ARGV for
redis-py, the worker's asyncio pipeline) and :func:`pack_call` (the whole EVALSHA as RESP
bytes, for :class:`ScriptRunner`: backfill and repair, where redis-py's per-argument cost
was half of a backfill's time). Both take ``tagged``: a cluster's version keys carry a hash
tag (:func:`gearsync.keys.version_key`), and a cluster's calls hold the changes of one slot.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Sequence

from redis.exceptions import AskError, NoScriptError, ResponseError, TryAgainError

from .changes import VersionedChange
from .constants import DEFAULT_TOMBSTONE_TTL
from .keys import key_slot, version_key
from .redis_clients import is_cluster

__all__ = ["LUA", "CHUNK", "MODES", "answers", "vkey", "script_args", "pack_call", "ScriptRunner", "STALE",
           "APPLIED", "CORRUPT", "RESERVED"]

LUA = resources.files(__package__).joinpath("versioned.lua").read_text(encoding="utf-8")
#: Changes per EVALSHA call (all calls of a batch share one pipeline).
CHUNK = 256
MODES = ("v", "nx", "cas", "w")
#: The script's answer per change.
STALE, APPLIED, CORRUPT, RESERVED = 0, 1, 2, 3


def answers(reply: bytes | str) -> list[int]:
    """The script's reply (one digit per change) as :data:`APPLIED` … :data:`RESERVED`."""
    return [d - 48 for d in (reply.encode() if isinstance(reply, str) else reply)]


def _version(c: VersionedChange, mode: str) -> bytes:
    if isinstance(c.version, bytes):  # repair: the stored text, "!"-prefixed to reset a corrupt one
        return c.version
    return b"" if mode == "cas" and not c.version else b"%d" % c.version


def vkey(c: VersionedChange, tagged: bool = False) -> bytes:
    """The key holding ``c``'s version: its placement's record, else :func:`version_key`
    (``tagged``: a cluster's form)."""
    return c.record if c.record is not None else version_key(c.key, tagged)


def script_args(changes: Sequence[VersionedChange], tombstone_ttl: int,
                mode: str = "v", tagged: bool = False) -> tuple[list[bytes], list[Any]]:
    """KEYS and ARGV of one ``versioned.lua`` call (``tagged``: a cluster's version keys)."""
    keys: list[bytes] = []
    argv: list[Any] = [tombstone_ttl, mode]
    for c in changes:
        keys += (c.key, vkey(c, tagged))
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


def pack_call(sha: bytes, changes: Sequence[VersionedChange], tombstone_ttl: int, mode: str,
              tagged: bool = False) -> bytes:
    """One ``EVALSHA`` as RESP bytes: the call :func:`script_args` describes, packed without
    redis-py (literal fragments for the fixed arguments)."""
    keys: list[bytes] = []
    argv: list[bytes] = [_bulk(b"%d" % tombstone_ttl), _bulk(mode.encode())]
    nargs = 2
    for c in changes:
        k = bytes(c.key)
        keys.append(_bulk(k))
        keys.append(_bulk(vkey(c, tagged)))
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


Handle = Any


class ScriptRunner:
    """``versioned.lua`` through a synchronous Redis client (backfill and repair): one pipeline
    of pre-packed EVALSHA calls per chunk — per node of a Redis Cluster, each call holding the
    changes of one slot; a call answered MOVED, ASK or TRYAGAIN (a slot moving) is sent again
    through the cluster client, which follows the redirection."""

    def __init__(self, client: Any, tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL) -> None:
        self.redis = client
        self.ttl = tombstone_ttl
        self.cluster = is_cluster(client)
        self.sha = str(client.script_load(LUA))

    def _calls(self, changes: Sequence[VersionedChange]) -> list[list[int]]:
        """The indices of the changes of each call: at most CHUNK, of one slot in a cluster."""
        if not self.cluster:
            return [list(range(i, min(i + CHUNK, len(changes)))) for i in range(0, len(changes), CHUNK)]
        slots: dict[int, list[int]] = {}
        for i, c in enumerate(changes):
            slots.setdefault(key_slot(c.key), []).append(i)
        return [g[i:i + CHUNK] for g in slots.values() for i in range(0, len(g), CHUNK)]

    def send(self, changes: Sequence[VersionedChange], mode: str, extra: Sequence[Sequence[Any]] = ()) -> Handle:
        """Send the calls for ``changes`` (then ``extra`` commands such as ``("SET", k, v)``,
        once the calls are answered) without waiting; :meth:`collect` reads the answers.
        Meanwhile the caller can prepare the next chunk while Redis runs this one."""
        sha = self.sha.encode()
        calls = self._calls(changes)
        if self.cluster:
            by_node: dict[str, tuple[Any, list[list[int]]]] = {}
            for call in calls:
                node = self.redis.nodes_manager.get_node_from_slot(key_slot(changes[call[0]].key))
                by_node.setdefault(node.name, (node.redis_connection, []))[1].append(call)
            sent = [self._send(client, [pack_call(sha, [changes[i] for i in c], self.ttl, mode, True)
                                        for c in node_calls], []) + (node_calls,)
                    for client, node_calls in by_node.values()]
            return sent, changes, mode, extra
        packed = [pack_call(sha, [changes[i] for i in c], self.ttl, mode) for c in calls]
        return [self._send(self.redis, packed, extra) + (calls,)], changes, mode, extra

    @staticmethod
    def _send(client: Any, packed: list[bytes], extra: Sequence[Sequence[Any]]) -> tuple[Any, Any, int]:
        pool = client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(packed + [conn.pack_command(*cmd)[0] for cmd in extra])
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return pool, conn, len(packed) + len(extra)

    def collect(self, handle: Handle, retry: bool = True) -> list[int]:
        """Per change the script's answer (:data:`APPLIED`, :data:`STALE`, :data:`CORRUPT`,
        :data:`RESERVED`), in the order of the changes sent; raises the first error Redis
        answered (a script forgotten by a restarted Redis is loaded again and the calls re-sent
        once)."""
        sent, changes, mode, extra = handle
        out: list[int] = [0] * len(changes)  # a cluster answers per node: put them in order
        errors: list[Exception] = []
        redo: list[list[int]] = []
        for pool, conn, n, calls in sent:
            replies: list[Any] = []
            try:
                for _ in range(n):
                    try:
                        replies.append(conn.read_response())
                    except ResponseError as e:
                        replies.append(e)
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
            for call, reply in zip(calls, replies):
                if isinstance(reply, (AskError, TryAgainError)) and self.cluster:  # MovedError is an AskError
                    redo.append(call)
                elif isinstance(reply, Exception):
                    errors.append(reply)
                else:
                    for i, x in zip(call, answers(reply)):
                        out[i] = x
            errors += [r for r in replies[len(calls):] if isinstance(r, Exception)]
        if errors:
            if retry and all(isinstance(e, NoScriptError) for e in errors):
                self.sha = str(self.redis.script_load(LUA))
                return self.collect(self.send(changes, mode, extra), retry=False)
            raise errors[0]
        for call in redo:  # through the cluster client, which follows MOVED and ASK
            keys, argv = script_args([changes[i] for i in call], self.ttl, mode, tagged=True)
            reply = self.redis.execute_command("EVALSHA", self.sha, len(keys), *keys, *argv)
            for i, x in zip(call, answers(reply)):
                out[i] = x
        if self.cluster:
            for cmd in extra:
                self.redis.execute_command(*cmd)
        return out

    def run(self, changes: Sequence[VersionedChange], mode: str, extra: Sequence[Sequence[Any]] = ()
            ) -> list[int]:
        """:meth:`send` then :meth:`collect`."""
        return self.collect(self.send(changes, mode, extra))
