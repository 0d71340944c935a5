"""Fuzz every UDF through the harness exactly as mysqld calls it: any arity, any argument
type, NULLs, constant or not, empty to 1 MiB strings, invalid UTF-8, several rows per
statement, aggregates by group.  Nothing may crash (run it under `make fuzz`, the ASan+UBSan
build) and the JSON functions must return valid JSON for every input.

GEARSYNC_FUZZ_EXAMPLES sets the examples per function (default 60: a few seconds in
`make test`; `make fuzz` runs 5000 per function against build/asan/gearsync_udf.so)."""
from __future__ import annotations

import json
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness
from gearsync.testing.processes import wait_for
from gearsync.testing.stack import Gearmand
from harness import (DECIMAL_RESULT, INT_RESULT, REAL_RESULT, STRING_RESULT, Arg, Udf,
                     UdfError, UdfInitError, call_once)

EXAMPLES = int(os.environ.get("GEARSYNC_FUZZ_EXAMPLES", "60"))
TYPES = [STRING_RESULT, INT_RESULT, REAL_RESULT, DECIMAL_RESULT]
JSON_WRAP = {"members": (b"{", b"}"), "values": (b"[", b"]")}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEAD = f"127.0.0.1:{_closed_port()}".encode()


@pytest.fixture(autouse=True, scope="module")
def dead_servers(tmp_path_factory: pytest.TempPathFactory):
    """Jobs go to a closed port (refused at once, then the breaker): no waiting.  The records
    gearsync_send accepted meanwhile wait in the process's queue for a reachable server: they
    are delivered to a throwaway gearmand afterwards, so no later test receives them."""
    call_once("gman_servers_set", Arg(DEAD, const=True))
    call_once("gearsync_timeout_set", 50)
    call_once("gearsync_do_timeout_set", 50)
    yield
    call_once("gearsync_timeout_set", 250)
    call_once("gearsync_do_timeout_set", 5000)
    with Gearmand(tmp_path_factory.mktemp("drain"), threads=1) as g:
        call_once("gman_servers_set", Arg(g.address.encode(), const=True))
        assert wait_for(lambda: call_once("gearsync_send_flush") == 0, 30)


def _big(n: int, seed: int) -> bytes:
    pattern = bytes((seed * 31 + i * 7) & 0xFF for i in range(251))
    return (pattern * (n // 251 + 1))[:n]


strings = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(str.encode),
    st.sampled_from([b"", b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                     b'{"a":[1,2,{"b":null}]}', b'"a":1', b"1,2", b"[" * 600, b"127.0.0.1:1",
                     b"[::1]:4730,h:1", b"a" * 600, b"json_", b"\xe2\x82", b"\\u0000"]),
    st.tuples(st.sampled_from([255, 256, 4096, 65535, 65536, 70000, 1 << 20]),
              st.integers(0, 255)).map(lambda t: _big(*t)),
)
values = st.one_of(
    st.none(), strings,
    st.integers(-(2 ** 63), 2 ** 63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
names = st.one_of(st.none(), st.binary(max_size=12),
                  st.sampled_from([b"json_x", b"udf_json_object(a)", b"t.json_data", b"`a`.`b`",
                                   b"NEW.id", b"x" * 300]))


@st.composite
def call_plan(draw):
    n = draw(st.one_of(st.integers(0, 5), st.sampled_from([6, 9, 20])))
    args = []
    for _ in range(n):
        v = draw(values)
        t = draw(st.sampled_from(TYPES))
        args.append(Arg(v, type=t, const=draw(st.booleans()), name=draw(names),
                        maybe_null=draw(st.booleans()),
                        max_length=draw(st.sampled_from([0, 1, 255, 65535, 2 ** 32 - 1]))))
    rows = draw(st.lists(st.lists(values, min_size=n, max_size=n), min_size=1, max_size=3))
    return args, rows


def _check_json(name: str, out: bytes | None) -> None:
    assert out is not None, name
    kind = name.rsplit("_", 1)[-1]
    wrap = JSON_WRAP.get(kind, (b"", b""))
    json.loads((wrap[0] + out + wrap[1]).decode("utf-8"), strict=True,
               parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def _fuzz_one(name: str, plan) -> None:
    args, rows = plan
    u = Udf(name, args)
    try:
        u.init()
    except UdfInitError as e:
        assert 0 < len(e.message) < 80 and e.message.startswith(name), e.message
        return
    try:
        if name in harness.AGGREGATES:
            u.group(rows)
            u.group(rows[:1])
            u.group([])
            return
        for row in rows:
            try:
                out = u.call(row)
            except UdfError:
                continue
            if "json" in name:
                _check_json(name, out)
    finally:
        u.close()
        # gman_servers_set may have pointed the library somewhere: back to the dead port
        if name == "gman_servers_set":
            call_once("gman_servers_set", Arg(DEAD, const=True))


FUZZED = sorted(harness.FUNCTIONS)


@pytest.mark.parametrize("name", FUZZED)
def test_fuzz(name: str) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 60,
              suppress_health_check=list(HealthCheck))
    @given(call_plan())
    def run(plan) -> None:
        _fuzz_one(name, plan)

    run()
