"""gearsync_udf.cnf and mysqld's environment (gs_config.c): the server lists, the timeouts and
their maxima, lock = on, the envelope secret, and the one line that says where each came
from.  The config is read once per process, so every case runs in a child process."""
from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

import harness
from conftest import Gearmand, free_port
from harness import Arg, call_once, init_error, run_child

SETTERS = ["gman_servers_set", "gearsync_timeout_set", "gearsync_do_timeout_set"]


def origin_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "gearsync_udf " in ln and ": config " in ln]
    assert len(lines) == 1, stderr  # once per process
    return lines[0]


def test_config_file_next_to_library(tmp_path: Path, gearmand_factory) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    shutil.copy(harness.so_path(), plugin / "gearsync_udf.so")
    (plugin / "gearsync_udf.cnf").write_text(textwrap.dedent(f"""\
        # gearsync UDF settings
        servers = 127.0.0.1:{free_port()}, {a.address}
        servers.cfgspecial = {b.address}
        timeout_ms = 300
        do_timeout_ms = 700
        bogus line
        unknown = 1
        """))
    r = run_child("""
        from harness import call_once, Arg
        assert call_once("gman_do_background", b"cfg", b"w") is not None
        assert call_once("gman_do_background", b"cfgspecial", b"w") is not None
        print(call_once("gearsync_timeout_set", Arg(None)))
        """, so=plugin / "gearsync_udf.so")
    assert r.returncode == 0, r.stderr
    assert a.queued("cfg") == 1 and b.queued("cfgspecial") == 1
    assert "gearsync_udf.cnf:6: expected key = value" in r.stderr
    assert "gearsync_udf.cnf:7: bad setting unknown" in r.stderr
    line = origin_line(r.stderr)
    assert f"config {plugin / 'gearsync_udf.cnf'} (read)" in line
    assert f"servers 127.0.0.1:" in line and f"{a.address} from the file" in line
    assert "timeout 300 ms from the file, do_timeout 700 ms from the file" in line
    assert "lock off" in line and "jobs unsigned" in line


def test_config_file_timeouts_and_runtime_override(tmp_path: Path, gearmand: Gearmand) -> None:
    cnf = tmp_path / "x.cnf"
    cnf.write_text(f"servers={gearmand.address}\ndo_timeout_ms=300\n")
    r = run_child(f"""
        import time
        from harness import call_once, Arg
        t = time.monotonic()
        assert call_once("gman_do", b"nobody", b"w") is None
        print(round(time.monotonic() - t, 2))
        # run time wins over the file
        assert call_once("gman_servers_set", Arg(b"127.0.0.1:{free_port()}", const=True))
        assert call_once("gman_do_background", b"rt", b"w") is None
        """, GEARSYNC_UDF_CONFIG=str(cnf))
    assert r.returncode == 0, r.stderr
    assert 0.25 <= float(r.stdout) < 1.5
    assert gearmand.queued("rt") == 0


def test_no_config_file_defaults_said_once(tmp_path: Path) -> None:
    missing = tmp_path / "missing.cnf"
    r = run_child("""
        from harness import call_once, Arg
        print(call_once("gearsync_do_timeout_set", Arg(None)), call_once("gearsync_timeout_set", Arg(None)))
        call_once("gman_servers_set", Arg(None))
        """, GEARSYNC_UDF_CONFIG=str(missing))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1  # the origin line, nothing else
    line = origin_line(r.stderr)
    assert f"config {missing} (none)" in line
    assert "servers 127.0.0.1:4730 from the built-in default" in line
    assert "timeout 250 ms from the built-in default, do_timeout 5000 ms from the built-in default" in line


def test_environment_wins_over_the_file(tmp_path: Path, gearmand: Gearmand) -> None:
    cnf = tmp_path / "x.cnf"
    cnf.write_text(f"servers = 127.0.0.1:{free_port()}\ntimeout_ms = 300\n")
    r = run_child("""
        from harness import call_once
        assert call_once("gman_do_background", b"envlist", b"w") is not None
        """, GEARSYNC_UDF_CONFIG=str(cnf), GEARSYNC_UDF_SERVERS=f" {gearmand.address} ",
        GEARSYNC_UDF_TIMEOUT_MS="400")
    assert r.returncode == 0, r.stderr
    assert gearmand.queued("envlist") == 1
    line = origin_line(r.stderr)
    assert f"servers {gearmand.address} from the environment (GEARSYNC_UDF_SERVERS)" in line
    assert "timeout 400 ms from the environment" in line


def test_bad_environment_is_logged_and_ignored(tmp_path: Path) -> None:
    r = run_child("""
        from harness import call_once, Arg
        call_once("gearsync_timeout_set", Arg(None))
        """, GEARSYNC_UDF_CONFIG=str(tmp_path / "none.cnf"), GEARSYNC_UDF_SERVERS="bad host!",
        GEARSYNC_UDF_DO_TIMEOUT_MS="soon")
    assert r.returncode == 0, r.stderr
    assert "GEARSYNC_UDF_SERVERS: bad character in host, ignored" in r.stderr
    assert "GEARSYNC_UDF_DO_TIMEOUT_MS: not a number of ms >= 1, ignored" in r.stderr
    assert "servers 127.0.0.1:4730 from the built-in default" in origin_line(r.stderr)


def test_timeouts_above_the_maximum_are_clamped_from_file_and_environment(tmp_path: Path) -> None:
    cnf = tmp_path / "x.cnf"
    cnf.write_text("timeout_ms = 3600000\ndo_timeout_ms = 99999999\n")
    r = run_child("""
        from harness import call_once, Arg
        call_once("gearsync_timeout_set", Arg(None))
        """, GEARSYNC_UDF_CONFIG=str(cnf))
    assert r.returncode == 0, r.stderr
    assert f"{cnf}:1: 3600000 ms is above the maximum, 10000 ms used" in r.stderr
    assert f"{cnf}:2: 99999999 ms is above the maximum, 60000 ms used" in r.stderr
    assert "timeout 10000 ms from the file, do_timeout 60000 ms from the file" in origin_line(r.stderr)
    r = run_child("""
        from harness import call_once, Arg
        call_once("gearsync_timeout_set", Arg(None))
        """, GEARSYNC_UDF_CONFIG=str(tmp_path / "none.cnf"), GEARSYNC_UDF_TIMEOUT_MS="86400000")
    assert "GEARSYNC_UDF_TIMEOUT_MS: 86400000 ms is above the maximum, 10000 ms used" in r.stderr
    assert "timeout 10000 ms from the environment" in origin_line(r.stderr)


LOCKED_PROBE = """
    from harness import call_once, init_error, Arg, STRING_RESULT
    for name in ("gman_servers_set", "gearsync_timeout_set", "gearsync_do_timeout_set"):
        for args in ([Arg(b"127.0.0.1:1", const=True)], [Arg(b"127.0.0.1:1")], [Arg(None)],
                     [Arg(100, const=True)], [Arg(100)]):
            if name != "gman_servers_set" and args[0].type == STRING_RESULT:
                continue
            print(init_error(name, *args))
    print(init_error("gman_servers_set", Arg(b"127.0.0.1:1"), Arg(b"fn")))
    # what the locked library still does: send to the file's servers
    print(call_once("gman_do_background", b"locked", b"w") is not None)
"""


def test_lock_on_refuses_every_setter(tmp_path: Path, gearmand: Gearmand) -> None:
    cnf = tmp_path / "locked.cnf"
    cnf.write_text(f"servers = {gearmand.address}\nlock = on\ntimeout_ms = 300\n")
    r = run_child(LOCKED_PROBE, GEARSYNC_UDF_CONFIG=str(cnf))
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[-1] == "True" and gearmand.queued("locked") == 1
    refusals = out[:-1]
    assert len(refusals) == 3 + 3 + 3 + 1
    for msg in refusals:
        name = msg.split(":")[0]
        assert name in SETTERS
        assert msg == f"{name}: locked by gearsync_udf.cnf (lock = on)"
        assert len(msg) < 80
    assert "lock on" in origin_line(r.stderr)


def test_lock_off_and_bad_lock_value(tmp_path: Path) -> None:
    cnf = tmp_path / "x.cnf"
    cnf.write_text("lock = on\nlock = off\n")
    r = run_child(LOCKED_PROBE, GEARSYNC_UDF_CONFIG=str(cnf))
    assert r.returncode == 0, r.stderr
    assert "locked" not in r.stdout and "lock off" in origin_line(r.stderr)
    cnf.write_text("lock = yes please\n")
    r = run_child(LOCKED_PROBE, GEARSYNC_UDF_CONFIG=str(cnf))
    assert f"{cnf}:1: bad setting lock" in r.stderr
    assert "locked" not in r.stdout  # unknown value: the default (off), said in the log


@pytest.mark.parametrize("how", ["secret", "secret_file"])
def test_secret_loaded_and_private(tmp_path: Path, how: str) -> None:
    cnf = tmp_path / "x.cnf"
    key = tmp_path / "key"
    key.write_bytes(b"s3cret bytes\n")
    key.chmod(0o600)
    cnf.write_text(f"secret = s3cret\n" if how == "secret" else f"secret_file = {key}\n")
    cnf.chmod(0o600)
    probe = """
        from harness import call_once, Arg
        call_once("gearsync_timeout_set", Arg(None))
        """
    r = run_child(probe, GEARSYNC_UDF_CONFIG=str(cnf))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1
    assert "jobs signed (HMAC-SHA256)" in origin_line(r.stderr)
    # readable by others: loaded, and a warning names the file
    (key if how == "secret_file" else cnf).chmod(0o644)
    r = run_child(probe, GEARSYNC_UDF_CONFIG=str(cnf))
    assert "readable by others (mode 644)" in r.stderr
    assert "jobs signed" in origin_line(r.stderr)


def test_secret_problems_leave_jobs_unsigned(tmp_path: Path) -> None:
    cnf = tmp_path / "x.cnf"
    too_long = tmp_path / "long"
    too_long.write_bytes(b"k" * 1025)
    cnf.write_text(f"secret_file = {tmp_path / 'missing'}\nsecret_file = {too_long}\nsecret =\n")
    r = run_child("""
        from harness import call_once, Arg
        call_once("gearsync_timeout_set", Arg(None))
        """, GEARSYNC_UDF_CONFIG=str(cnf))
    assert "cannot read secret_file" in r.stderr and "is longer than 1024 bytes" in r.stderr
    assert r.stderr.count("bad setting secret") == 3
    assert "jobs unsigned" in origin_line(r.stderr)


def test_setters_in_this_process_are_not_locked() -> None:
    """The test process itself runs without a config file (lock off)."""
    for name in SETTERS:
        assert init_error(name, Arg(b"x" if name == "gman_servers_set" else 1)) is None
    assert call_once("gearsync_timeout_set", 250) == 250
