"""gearsync.settings: defaults, the environment, the config file and options, merged in one place;
gearsync.connections: URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gearsync.config import ConfigError

from gearsync.connections import parse_mysql_url, redact
from gearsync.settings import Settings, SettingsError, parse_servers


def test_settings_and_urls() -> None:
    s = Settings.from_env({"GEARSYNC_MYSQL_URL": "mysql://u:p%40ss@db:3307/", "GEARSYNC_SWEEP_INTERVAL": "0.5",
                           "GEARSYNC_SWEEP_AGE": "2", "GEARSYNC_TOMBSTONE_TTL": "60"})
    assert (s.mysql_url, s.sweep_interval, s.sweep_age, s.tombstone_ttl) == ("mysql://u:p%40ss@db:3307/", 0.5, 2.0, 60)
    assert Settings.from_env({}).mysql_url is None
    assert parse_mysql_url("mysql://u:p%40ss@db:3307/app") == {
        "host": "db", "port": 3307, "user": "u", "password": "p@ss", "database": "app"}
    assert parse_mysql_url("mysql://root@127.0.0.1/")["port"] == 3306
    with pytest.raises(SettingsError):
        Settings.from_env({"GEARSYNC_MYSQL_URL": "postgres://x/"})
    with pytest.raises(SettingsError):
        Settings.from_env({"GEARSYNC_SWEEP_INTERVAL": "soon"})
    with pytest.raises(SettingsError):
        Settings.from_env({"GEARSYNC_MYSQL_URL": "mysql://x/"}, functions=["gearsync"])


def test_parse_servers() -> None:
    assert parse_servers("a:1, b ,[::1]:4731") == [("a", 1), ("b", 4730), ("::1", 4731)]
    assert parse_servers("h") == [("h", 4730)]
    with pytest.raises(SettingsError, match="IPv6"):
        parse_servers("::1:4730")


def test_settings_defaults_and_env() -> None:
    s = Settings.from_env({})
    assert s.gearman == [("127.0.0.1", 4730)]
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.function == "syncToRedis" and s.window == 256
    env = {"GEARSYNC_GEARMAN": "g1:4000,g2", "GEARSYNC_REDIS_URL": "redis://r:1/2",
           "GEARSYNC_FUNCTION": "a,b", "GEARSYNC_WINDOW": "8", "GEARSYNC_LOG_LEVEL": "debug"}
    s = Settings.from_env(env)
    assert s.gearman == [("g1", 4000), ("g2", 4730)] and s.redis_url == "redis://r:1/2"
    assert s.functions == ["a", "b"] and s.window == 8 and s.log_level == "DEBUG"
    s = Settings.from_env(env, redis_url="redis://o:2/0", window=None)
    assert s.redis_url == "redis://o:2/0" and s.window == 8
    with pytest.raises(SettingsError, match="GEARSYNC_WINDOW"):
        Settings.from_env({"GEARSYNC_WINDOW": "many"})


def test_precedence_options_over_environment_over_file_over_defaults(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[gearman]\nservers = ["file:1"]\n[redis]\nurl = "redis://file/0"\n'
                   '[mysql]\nurl = "mysql://file/"\n[tables."s.t"]\nkey = "t:{id}"\n')
    s = Settings.load({"config_path": str(cfg)}, {})
    assert (s.gearman, s.redis_url, s.mysql_url) == ([("file", 1)], "redis://file/0", "mysql://file/")
    assert list(s.tables) == ["s.t"] and s.config is not None and s.config_path == str(cfg)
    env = {"GEARSYNC_CONFIG": str(cfg), "GEARSYNC_REDIS_URL": "redis://env/0", "GEARSYNC_GEARMAN": "env:2"}
    s = Settings.load({}, env)
    assert (s.gearman, s.redis_url, s.mysql_url) == ([("env", 2)], "redis://env/0", "mysql://file/")
    s = Settings.load({"redis_url": "redis://opt/0", "gearman": None}, env)
    assert (s.gearman, s.redis_url) == ([("env", 2)], "redis://opt/0")
    # no file named and none in the working directory: defaults; required: an error naming it
    monkeypatch.chdir(tmp_path)
    assert Settings.load({}, {}).config is None and Settings.load({}, {}).redis_url == "redis://127.0.0.1:6379/0"
    with pytest.raises(ConfigError, match="gearsync.toml: no such file"):
        Settings.load({}, {}, require_config=True)
    (tmp_path / "gearsync.toml").write_text('[redis]\nurl = "redis://cwd/0"\n')
    assert Settings.load({}, {}).redis_url == "redis://cwd/0"


def test_environment_errors_name_the_variable() -> None:
    for var, value, message in [("GEARSYNC_LOG_LEVEL", "loud", "expected one of DEBUG"),
                                ("GEARSYNC_LOG_FORMAT", "xml", "expected one of text, json"),
                                ("GEARSYNC_METRICS_PORT", "x", "is not an integer"),
                                ("GEARSYNC_GEARMAN", "h:p", "GEARSYNC_GEARMAN: bad server")]:
        with pytest.raises(SettingsError, match=var) as e:
            Settings.load({}, {var: value}, read_config=False)
        assert message in str(e.value)


def test_urls_are_logged_without_their_password() -> None:
    assert redact("redis://:s3cret@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert redact("mysql://gearsync:p@ss@db:3306/") == "mysql://gearsync:***@db:3306/"
    assert redact("mysql://gearsync@db:3306/") == "mysql://gearsync@db:3306/"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact("mysql://u:pw@h/?unix_socket=/run/mysqld/mysqld.sock") == \
        "mysql://u:***@h/?unix_socket=/run/mysqld/mysqld.sock"
    assert redact(None) == ""
