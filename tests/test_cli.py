"""CLI: help, version, env + option precedence, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gearsync
from gearsync import cli


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"gearsync {gearsync.__version__}"


def test_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["worker", "--help"])
    out = capsys.readouterr().out
    for opt in ("--gearman", "--redis-url", "--function", "--window", "--batch-size", "--log-level"):
        assert opt in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "worker" in capsys.readouterr().out


@pytest.mark.parametrize("value, message", [
    ("x:abc", "port 'abc' is not a number"),
    ("h:70000", "not in 1..65535"),
    ("a,,b", "empty server"),
    (":4730", "missing host"),
])
def test_bad_gearman_option(value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["worker", "--gearman", value])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_env_is_a_clean_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEARSYNC_GEARMAN", "h:port")
    with pytest.raises(SystemExit) as e:
        cli.main(["worker"])
    assert e.value.code == 2
    assert "port 'port' is not a number" in capsys.readouterr().err


def test_console_script_runs() -> None:
    res = subprocess.run([sys.executable, "-m", "gearsync.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and gearsync.__version__ in res.stdout
