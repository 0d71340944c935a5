"""CLI: help, version, env + option precedence, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gearsync
from gearsync import cli
from gearsync.settings import Settings, SettingsError, parse_servers


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


def test_parse_servers() -> None:
    assert parse_servers("a:1, b ,[::1]:4731") == [("a", 1), ("b", 4730), ("::1", 4731)]
    assert parse_servers("h") == [("h", 4730)]
    with pytest.raises(SettingsError, match="IPv6"):
        parse_servers("::1:4730")


def test_settings_defaults_and_env() -> None:
    s = Settings.from_env({})
    assert s.gearman == [("127.0.0.1", 4730)]
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.function == "syncToRedis" and s.window == 32
    env = {"GEARSYNC_GEARMAN": "g1:4000,g2", "GEARSYNC_REDIS_URL": "redis://r:1/2",
           "GEARSYNC_FUNCTION": "a,b", "GEARSYNC_WINDOW": "8", "GEARSYNC_LOG_LEVEL": "debug"}
    s = Settings.from_env(env)
    assert s.gearman == [("g1", 4000), ("g2", 4730)] and s.redis_url == "redis://r:1/2"
    assert s.functions == ["a", "b"] and s.window == 8 and s.log_level == "DEBUG"
    s = Settings.from_env(env, redis_url="redis://o:2/0", window=None)
    assert s.redis_url == "redis://o:2/0" and s.window == 8
    with pytest.raises(SettingsError, match="GEARSYNC_WINDOW"):
        Settings.from_env({"GEARSYNC_WINDOW": "many"})


def test_console_script_runs() -> None:
    res = subprocess.run([sys.executable, "-m", "gearsync.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and gearsync.__version__ in res.stdout
