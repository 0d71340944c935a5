"""gearsync.redis_sink: versioned writes through the Lua script, against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearsync.changes import VersionedChange
from gearsync.redis_batch import pack
from gearsync.keys import version_key
from gearsync.redis_sink import RedisSink
from gearsync.testing.stack import RedisServer


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with RedisServer(tmp_path_factory.mktemp("redis")) as r:
        yield r


def _apply(url: str, changes: list[VersionedChange], ttl: int = 100) -> list[bool]:
    async def go() -> list[bool]:
        sink = RedisSink.from_url(url)
        try:
            return await sink.apply_versioned(changes, ttl)
        finally:
            await sink.close()
    return asyncio.run(go())


def test_versioned_write_semantics(own_redis: RedisServer) -> None:
    r = own_redis.client()
    r.flushall()
    url = own_redis.url
    assert _apply(url, [VersionedChange(b"k", 5, b"five")]) == [True]
    assert _apply(url, [VersionedChange(b"k", 5, b"five again")]) == [False]  # replay: no-op
    assert _apply(url, [VersionedChange(b"k", 4, b"older")]) == [False]
    assert r.get(b"k") == b"five" and r.get(version_key(b"k")) == b"5" and r.ttl(version_key(b"k")) == -1
    assert _apply(url, [VersionedChange(b"k", 7, None)], ttl=100) == [True]  # delete: tombstone
    assert r.get(b"k") is None and r.get(version_key(b"k")) == b"7" and 0 < r.ttl(version_key(b"k")) <= 100
    assert _apply(url, [VersionedChange(b"k", 6, b"resurrect?")]) == [False]
    assert r.get(b"k") is None
    assert _apply(url, [VersionedChange(b"k", 8, b"back")]) == [True]
    assert r.ttl(version_key(b"k")) == -1, "a set after a tombstone drops its TTL"
    # one batch, out of order, over many keys and more than one script chunk
    changes = [VersionedChange(f"m{i % 50}".encode(), 1000 - i, f"v{1000 - i}".encode()) for i in range(600)]
    results = _apply(url, changes)
    assert results.count(True) == 50
    assert all(r.get(f"m{j}".encode()) == f"v{1000 - j}".encode() for j in range(50))


def test_versioned_write_reloads_the_script_after_a_flush(own_redis: RedisServer) -> None:
    r = own_redis.client()
    r.flushall()

    async def go() -> list[bool]:
        sink = RedisSink.from_url(own_redis.url)
        try:
            await sink.apply_versioned([VersionedChange(b"a", 1, b"x")])
            await sink.redis.script_flush()
            return await sink.apply_versioned([VersionedChange(b"a", 2, b"y")])
        finally:
            await sink.close()
    assert asyncio.run(go()) == [True]
    assert r.get(b"a") == b"y"


def test_version_key_memory_is_small(own_redis: RedisServer) -> None:
    r = own_redis.client()
    r.flushall()
    _apply(own_redis.url, [VersionedChange(b"test_safe:123456", 987654321, b"some name")])
    assert r.memory_usage(version_key(b"test_safe:123456")) <= 96


def test_mark_applied_writes_each_table_at_most_every_half_second(own_redis: RedisServer) -> None:
    """`status` reads the last apply per table from gearsync:applied; the worker notes it at
    most every MARK_EVERY s per table, not once per batch (a round trip each)."""
    from gearsync.constants import APPLIED_AT
    from gearsync.redis_sink import MARK_EVERY

    r = own_redis.client()
    r.flushall()

    async def go() -> list[dict[bytes, bytes]]:
        sink = RedisSink.from_url(own_redis.url)
        try:
            seen = []
            await sink.mark_applied(["a.t"])
            seen.append(r.hgetall(APPLIED_AT))
            await sink.mark_applied(["a.t", "b.t"])  # a.t too soon: only b.t is written
            seen.append(r.hgetall(APPLIED_AT))
            await asyncio.sleep(MARK_EVERY + 0.05)
            await sink.mark_applied(["a.t"])
            seen.append(r.hgetall(APPLIED_AT))
            return seen
        finally:
            await sink.close()

    first, second, third = asyncio.run(go())
    assert set(first) == {b"a.t"}
    assert set(second) == {b"a.t", b"b.t"} and second[b"a.t"] == first[b"a.t"]
    assert float(third[b"a.t"]) >= float(first[b"a.t"]) + MARK_EVERY


@given(st.lists(st.one_of(st.binary(), st.text(), st.integers(), st.binary().map(bytearray),
                          st.binary().map(memoryview)), min_size=1, max_size=8))
def test_pack_is_resp_of_each_argument(args: list[Any]) -> None:
    """A command as RESP: an array of bulk strings, text as UTF-8 (lone surrogates passed
    through, as keys read from a database can hold them), numbers as their decimal text."""
    def bulk(a: Any) -> bytes:
        b = a.encode("utf-8", "surrogatepass") if isinstance(a, str) else str(a).encode() if isinstance(a, int) \
            else bytes(a)
        return b"$%d\r\n" % len(b) + b + b"\r\n"
    assert pack(args) == b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)
    assert pack(b"*1\r\n$4\r\nPING\r\n") == b"*1\r\n$4\r\nPING\r\n"  # packed already
