"""Version keys in a Redis Cluster share their key's slot — asked of a real cluster node with
CLUSTER KEYSLOT, for keys full of braces — and no two keys share a version key. One Redis
keeps the untagged ``gearsync:v:<key>``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearsync.keys import SLOTS, hash_tag, key_slot, slot_tag, version_key

#: Keys made mostly of braces and a few letters: every hash-tag case (none, empty, nested,
#: unclosed, several, at either end) comes up often.
braces = st.binary(min_size=0, max_size=12).map(lambda b: bytes(b"{}a:x"[c % 5] for c in b))
keys = st.one_of(braces, st.binary(max_size=40), st.text(max_size=20).map(lambda t: t.encode()))


@pytest.fixture(scope="module")
def node(redis_cluster: Any) -> Any:
    return redis_cluster.nodes[0].client()


def _slots(node: Any, names: list[bytes]) -> list[int]:
    pipe = node.pipeline(transaction=False)
    for k in names:
        pipe.execute_command("CLUSTER KEYSLOT", k)
    return [int(x) for x in pipe.execute()]


@settings(max_examples=400, deadline=None)
@given(st.lists(keys, min_size=1, max_size=20))
def test_a_key_and_its_version_key_share_a_slot(node: Any, names: list[bytes]) -> None:
    tagged = [version_key(k, tagged=True) for k in names]
    got = _slots(node, names + tagged)
    key_slots, version_slots = got[:len(names)], got[len(names):]
    assert version_slots == key_slots
    assert [key_slot(k) for k in names] == key_slots  # our CRC16 is the server's


@pytest.mark.parametrize("key, tag", [
    (b"user:1", None), (b"user:{42}:p", b"42"), (b"{}", None), (b"a{}b{c}", None), (b"a{b", None),
    (b"a}b{c}", b"c"), (b"{{x}}", b"{x"), (b"", None), (b"x{y}z{w}", b"y"),
])
def test_hash_tag_is_the_specs(node: Any, key: bytes, tag: bytes | None) -> None:
    """First '{', then the first '}' after it, with something in between."""
    assert hash_tag(key) == tag
    assert _slots(node, [key, tag or key, version_key(key, tagged=True)]) == [key_slot(key)] * 3


@settings(max_examples=500, deadline=None)
@given(keys, keys)
def test_no_two_keys_share_a_version_key(a: bytes, b: bytes) -> None:
    if a != b:
        assert version_key(a, tagged=True) != version_key(b, tagged=True)
        assert version_key(a) != version_key(b)


def test_the_forms_that_look_alike_stay_apart() -> None:
    """A key without a tag is wrapped (``{x}``); a key whose tag is all of it gets the long form,
    so ``x`` and ``{x}`` differ; the empty key and the slot tag of slot 0 differ."""
    assert version_key(b"x", True) == b"gearsync:v:{x}"
    assert version_key(b"{x}", True) == b"gearsync:v:{x}:{x}"
    assert version_key(b"user:{7}:cart", True) == b"gearsync:v:{7}:user:{7}:cart"
    assert version_key(b"", True) != version_key(slot_tag(0), True)
    assert version_key(b"a}b", True) == b"gearsync:v:{" + slot_tag(key_slot(b"a}b")) + b"}:a}b"


def test_one_redis_keeps_the_untagged_form() -> None:
    for k in (b"user:1", b"{x}", b""):
        assert version_key(k) == b"gearsync:v:" + k


def test_slot_tags_cover_every_slot() -> None:
    assert all(key_slot(slot_tag(s)) == s and b"}" not in slot_tag(s) for s in range(SLOTS))
    assert slot_tag(0) == b"3560"  # the table is fixed: the smallest number per slot
