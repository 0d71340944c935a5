"""The example files the README points at stay true to the CLI."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import REPO_ROOT



def test_systemd_unit_starts_a_worker_the_cli_accepts() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read(REPO_ROOT / "examples" / "gearsync-worker.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0].endswith("/gearsync") and argv[1] == "worker"
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    res = subprocess.run([sys.executable, "-m", "gearsync", *argv[1:], "--help"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    env = unit["Service"]["Environment"]
    assert env.startswith("GEARSYNC_CONFIG=") and "GEARSYNC_CONFIG" in res.stdout


def test_table_handler_example_gets_commit_confirmed_changes(stack: Any, safe_mysql: Any, redis_client: Any,
                                                             safe_env: dict[str, str], tmp_path: Path) -> None:
    """examples/table_handler.py through the real stack: a hash per committed row, nothing for a
    rolled-back one, the key gone on delete."""
    from gearsync.testing.processes import wait_for

    log = tmp_path / "example.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "examples" / "table_handler.py")],
                                env=safe_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: stack.gearmand.status().get("gearsync", (0, 0, 0))[2] > 0 or proc.poll() is not None, 15)
        assert proc.poll() is None, log.read_text()
        with safe_mysql.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO test.test_safe VALUES (1, 'rolled back')")
            cur.execute("ROLLBACK")
            cur.execute("INSERT INTO test.test_safe VALUES (2, 'ada'), (3, 'bob')")
            cur.execute("DELETE FROM test.test_safe WHERE id = 3")
        wait_for(lambda: redis_client.hgetall("test_safe:2") == {b"name": b"ada", b"shout": b"ADA"}, 15)
        wait_for(lambda: redis_client.exists("test_safe:3") == 0, 15)
        assert redis_client.exists("test_safe:1") == 0
    finally:
        proc.terminate()
        assert proc.wait(15) == 0, log.read_text()
