"""The library under valgrind's memcheck: a child process drives the very build mysqld loads
(build/gearsync_udf.so, not the ASan build) through the cffi harness -- every JSON function
over awkward values, gearsync_send and its sender thread against a real gearmand, the
gman_* background and foreground paths (a foreground job that times out), the setters, the
library's unload at exit -- and no memcheck error and no definitely-lost block may have a
frame in the library. Python's own reports (its finalizer reads memory valgrind cannot
follow) are left out by that rule; a planted over-read shows the rule finds ours."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import so_path

EXERCISE = """\
    import sys
    from harness import Udf, Arg, call_once
    call_once("gman_servers_set", Arg(sys.argv[1].encode(), const=True))
    call_once("gearsync_timeout_set", 250)
    call_once("gearsync_do_timeout_set", 50)
    names = ["udf_json_object", "udf_json_array", "udf_json_members", "udf_json_values"]
    values = [0, -2**63, 2**63 - 1, 1.5e300, float("nan"), -0.0, None, b"", b"x" * 70000,
              b"\\x00\\xff\\"\\\\\\n\\x7f", "caf\\u00e9 \\U0001f680".encode(), b"[1,2]", b"\\xe2\\x82",
              b"{\\"a\\": [1, {\\"b\\": null}]}"]
    for n in names:
        for i in range(0, len(values), 2):
            args = [Arg(values[i], name="json_a"), Arg(values[i + 1], name="b%d" % i)]
            with Udf(n, args) as f:
                for _ in range(3):
                    f()
    with Udf("udf_json_object", [Arg(1, name="id"), Arg(b"v", name="name")]) as f:
        for i in range(300):
            w = f([i, b"row %d " % i * (i % 40)])
            assert call_once("gearsync_send", b"vg", w, b"route %d" % i) is not None
            if i % 30 == 0:
                call_once("gman_do_background", b"vg", w)
                call_once("gearsync_seq")
    assert call_once("gearsync_send", b"", b"w") is None  # a bad function: NULL
    assert call_once("gman_do", b"nobody_serves_this", b"w") is None  # the 50 ms timeout
    assert call_once("gearsync_send_flush") == 0
    assert call_once("gearsync_udf_info")
    print("exercised")
    """

OVERREAD = """\
    from harness import Udf, Arg, ffi
    f = Udf("udf_json_array", [Arg(b"abcd")])
    f.init()
    p = ffi.new("char[]", 4)
    f.argv[0] = p
    f.lengths[0] = 4096  # a value claimed 4 KiB long in a 4-byte buffer
    f.fn(f.initid, f.udf_args, f.result, f.length, f.is_null, f.error)
    print("exercised")
    """

def _memcheck(code: str, *argv: str) -> tuple[list[str], str]:
    """Run code under memcheck; (the reports with a frame in the library, the child's stdout)."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("valgrind and ASan do not run together (make fuzz runs the ASan build)")
    res = subprocess.run(
        ["valgrind", "--leak-check=full", "--show-leak-kinds=definite", "--num-callers=40",
         sys.executable, "-c", textwrap.dedent(code), *argv],
        cwd=Path(__file__).parent, capture_output=True, text=True, timeout=600,
        env={**os.environ, "GEARSYNC_UDF_SO": str(so_path()), "PYTHONMALLOC": "malloc"})
    reports = re.split(r"\n==\d+== ?\n", res.stderr)
    ours = []
    for rep in reports:
        frames = [ln for ln in rep.splitlines() if re.match(r"==\d+==\s+(at|by) 0x", ln)]
        if any("gearsync_udf" in ln or re.search(r"\bgs_\w+ \(", ln) for ln in frames):
            ours.append(rep)
    assert "exercised" in res.stdout, res.stderr[-3000:]
    return ours, res.stdout


def test_no_memcheck_report_in_the_library(gearmand_factory) -> None:
    g = gearmand_factory()
    ours, _ = _memcheck(EXERCISE, g.address)
    assert not ours, "\n\n".join(ours[:3])


def test_memcheck_finds_an_overread_in_the_library() -> None:
    """The rule above is not blind: an argument longer than its buffer (a server bug, planted
    here) is reported with the library's frames."""
    ours, _ = _memcheck(OVERREAD)
    assert any("Invalid read" in rep for rep in ours), ours
