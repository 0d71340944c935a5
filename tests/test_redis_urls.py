"""Redis URLs: one Redis, ``redis+cluster://`` and ``redis+sentinel://`` read into what they
name, bad ones refused with the password masked, and the clients made from them."""

from __future__ import annotations

import pytest
import redis
import redis.cluster

from gearsync.connections import redact
from gearsync.redis_clients import CLUSTER, SENTINEL, SINGLE, is_cluster, parse_redis_url, sync_client
from gearsync.settings import Settings, SettingsError


def test_single_redis_urls_are_left_to_redis_py() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@h/3", "unix:///run/redis.sock?db=2"):
        t = parse_redis_url(url)
        assert (t.kind, t.url, t.nodes) == (SINGLE, url, ())
    assert parse_redis_url("rediss://h/0").tls


def test_cluster_url_names_its_startup_nodes() -> None:
    t = parse_redis_url("redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002/")
    assert t.kind == CLUSTER and not t.tls
    assert t.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (t.username, t.password) == ("app", "p@ss")
    assert parse_redis_url("rediss+cluster://h:1/0").tls
    assert parse_redis_url("redis+cluster://:secret@h:1").password == "secret"
    assert "secret" not in str(parse_redis_url("redis+cluster://:secret@h:1,h:2"))


def test_sentinel_url_names_service_db_and_passwords() -> None:
    t = parse_redis_url("redis+sentinel://:data%2Fpw@s1:26380,s2/mymaster/2?sentinel_password=s%26p")
    assert t.kind == SENTINEL and t.nodes == (("s1", 26380), ("s2", 26379))
    assert (t.service, t.db, t.password, t.sentinel_password) == ("mymaster", 2, "data/pw", "s&p")
    assert parse_redis_url("redis+sentinel://s1/svc").db == 0


@pytest.mark.parametrize("url, says", [
    ("http://h/0", "expected one of"),
    ("redis+cluster://h:1/1", "database 0 only"),
    ("redis+cluster://h:1?foo=1", "unknown option"),
    ("redis+cluster://h:x", "not a number"),
    ("redis+cluster://h:1,,h:2", "empty host"),
    ("redis+sentinel://s1:26379", "service"),
    ("redis+sentinel://s1/svc/x", "not a number"),
    ("redis+sentinel://s1/svc?db=1", "unknown option"),
])
def test_bad_urls_are_refused(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_redis_url(url)


def test_errors_and_logs_mask_the_password() -> None:
    with pytest.raises(ValueError) as e:
        parse_redis_url("redis+cluster://u:hunter2@h:1/5")
    assert "hunter2" not in str(e.value) and "***" in str(e.value)
    assert redact("redis+sentinel://:hunter2@s1,s2/svc/0") == "redis+sentinel://:***@s1,s2/svc/0"


def test_settings_refuse_a_bad_redis_url_and_take_replicas() -> None:
    with pytest.raises(SettingsError, match="database 0 only"):
        Settings.from_env({"GEARSYNC_REDIS_URL": "redis+cluster://h:1/2"})
    s = Settings.from_env({"GEARSYNC_REDIS_URL": "redis+cluster://h:1", "GEARSYNC_REDIS_REPLICAS": "1",
                           "GEARSYNC_REDIS_REPLICA_TIMEOUT": "0.5"})
    assert (s.redis_replicas, s.redis_replica_timeout) == (1, 0.5)
    with pytest.raises(SettingsError):
        Settings.from_env({"GEARSYNC_REDIS_REPLICAS": "-1"})


def test_clients_are_of_the_kind_the_url_names(redis_cluster) -> None:  # type: ignore[no-untyped-def]
    one = sync_client("redis://127.0.0.1:1/0")
    assert isinstance(one, redis.Redis) and not is_cluster(one)
    c = sync_client(redis_cluster.url)
    try:
        assert isinstance(c, redis.cluster.RedisCluster) and is_cluster(c)
        assert len(c.get_primaries()) == 3
    finally:
        c.close()


def test_extra_targets_are_refused_on_a_cluster(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A placement writes its record and target keys in one call: keys of several slots."""
    cfg = tmp_path / "gearsync.toml"
    cfg.write_text('[mysql]\nurl = "mysql://u@h/"\n[tables."s.posts"]\nkey = "post:{id}"\nvalue = "json"\n'
                   '[[tables."s.posts".targets]]\ntype = "set"\nkey = "tag:{tag}"\nmember = "{id}"\n')
    with pytest.raises(SettingsError, match="extra targets .* which a Redis Cluster cannot take"):
        Settings.load({"config_path": str(cfg)}, {"GEARSYNC_REDIS_URL": "redis+cluster://h:7000"})
    assert Settings.load({"config_path": str(cfg)}, {"GEARSYNC_REDIS_URL": "redis+sentinel://s/svc"}).tables
