"""gearsync.versioned: the two encoders of one versioned.lua call agree, byte for byte."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gearsync.changes import VersionedChange
from gearsync.constants import VERSION_PREFIX
from gearsync.versioned import MODES, pack_call, script_args, vkey


def _resp(args: list[Any]) -> bytes:
    """RESP of a command, as redis-py sends it (ints as their decimal text)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


_bytes = st.binary(max_size=40)
_change = st.builds(
    VersionedChange, key=_bytes, version=st.integers(0, 2**53 - 1),
    value=st.none() | _bytes, hash=st.none() | st.dictionaries(_bytes, _bytes, min_size=1, max_size=4),
    ttl=st.none() | st.integers(1, 10**6), op=st.none() | st.just(b"j"), args=st.just(()), record=st.none())
#: placements of extra targets: a record key, an op, arguments
_placement = st.builds(
    VersionedChange, key=_bytes, version=st.integers(0, 2**53 - 1), value=st.none(),
    op=st.sampled_from([b"S", b"Z", b"X"]), args=st.lists(_bytes, max_size=4).map(tuple),
    record=_bytes.map(lambda b: b"gearsync:r:t:" + b))


@given(st.lists(_change | _placement, max_size=8), st.integers(1, 10**6), st.sampled_from(MODES))
def test_pack_call_is_script_args_in_resp(changes: list[VersionedChange], ttl: int, mode: str) -> None:
    keys, argv = script_args(changes, ttl, mode)
    assert keys[1::2] == [c.record if c.record is not None else VERSION_PREFIX + c.key for c in changes]
    assert keys[1::2] == [vkey(c) for c in changes]
    expected = _resp([b"EVALSHA", b"f" * 40, len(keys), *keys, *argv])
    assert pack_call(b"f" * 40, changes, ttl, mode) == expected
