"""gearsync_send with ``linger_us`` in gearsync_udf.cnf, through the cffi harness against a real
gearmand: records that arrive close together share a job instead of a job each, and nothing
is lost or reordered by the wait. linger_us is read once per process: each case is a child."""
from __future__ import annotations

from pathlib import Path

from gearman_peers import grab_all
from gearsync.envelope import decode
from harness import run_child

TRICKLE = """\
    import time
    from harness import Udf, Arg, call_once
    t0 = time.monotonic()
    with Udf("gearsync_send", [Arg(b"linger"), Arg(b"w")]) as f:
        for i in range(200):
            assert f([b"linger", b"row %d" % i]) is not None
            time.sleep(0.0002)  # a row every ~0.2 ms: a job each without the linger
    print("elapsed", time.monotonic() - t0)
    assert call_once("gearsync_send_flush") == 0
    """


def _cnf(tmp_path: Path, address: str, linger: str) -> str:
    path = tmp_path / "linger.cnf"
    path.write_text(f"servers = {address}\nlinger_us = {linger}\n")
    return str(path)


def test_rows_close_together_share_jobs_in_order(gearmand_factory, tmp_path: Path) -> None:
    g = gearmand_factory()
    r = run_child(TRICKLE, GEARSYNC_UDF_CONFIG=_cnf(tmp_path, g.address, "5000"))
    assert r.returncode == 0, r.stderr
    assert "linger 5000 us" in r.stderr  # the config line says what applies
    elapsed = float(r.stdout.split()[-1])
    jobs = grab_all(g, b"linger")
    records = [rec for _, w in jobs for rec in decode(b"linger", w, None)]
    assert [p for _, p in records] == [b"row %d" % i for i in range(200)]
    versions = [v for v, _ in records]
    assert versions == sorted(versions) and len(set(versions)) == 200
    # at most one job per linger period (+ the first, which goes at once, and the last)
    assert len(jobs) <= elapsed / 0.005 + 2, (len(jobs), elapsed)


def test_bad_linger_is_logged_and_none_applies(gearmand_factory, tmp_path: Path) -> None:
    g = gearmand_factory()
    r = run_child(TRICKLE, GEARSYNC_UDF_CONFIG=_cnf(tmp_path, g.address, "20000"))  # above 10,000
    assert r.returncode == 0, r.stderr
    assert "bad setting linger_us" in r.stderr and "linger 0 us" in r.stderr
    records = [rec for _, w in grab_all(g, b"linger") for rec in decode(b"linger", w, None)]
    assert [p for _, p in records] == [b"row %d" % i for i in range(200)]
