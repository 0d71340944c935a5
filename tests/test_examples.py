"""The example files the README points at stay true to the CLI."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys

from gearsync.testing.stack import REPO_ROOT


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
