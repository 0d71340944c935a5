"""gearsync.toml: parsing, validation messages, key templates, and the check against a live schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gearsync.config import ConfigError, load, parse
from gearsync.schema import check_schema, live_columns

GOOD = """
[gearman]
servers = ["10.0.0.1:4730", "10.0.0.2"]

[redis]
url = "redis://127.0.0.1:6380/2"

[mysql]
url = "mysql://gearsync@127.0.0.1:3306/"

[tables."shop.users"]
key = "user:{id}"
value = "json"
exclude = ["password_hash"]
ttl = 3600

[tables."shop.orders"]
key = "order:{shop_id}:{id}"
value = "column"
column = "status"
mode = "direct"

[tables."shop.`odd.name`"]
key = "{{literal}}:{id}"
value = "hash"
columns = ["id", "a b"]
"""


def test_a_full_file_parses(tmp_path: Path) -> None:
    f = tmp_path / "gearsync.toml"
    f.write_text(GOOD)
    cfg = load(f)
    assert cfg.gearman == ["10.0.0.1:4730", "10.0.0.2"]
    assert cfg.redis_url == "redis://127.0.0.1:6380/2"
    assert cfg.mysql_url == "mysql://gearsync@127.0.0.1:3306/"
    users = cfg.table("shop.users")
    assert (users.schema, users.table, users.value, users.ttl, users.mode) == ("shop", "users", "json", 3600, "safe")
    assert users.render_key({"id": 5, "name": "x"}) == "user:5"
    assert users.value_columns(["id", "name", "password_hash"]) == ["id", "name"]
    orders = cfg.table("shop.orders")
    assert orders.key_columns == ("shop_id", "id")
    assert orders.render_key({"id": 7, "shop_id": "eu"}) == "order:eu:7"
    assert orders.value_columns(["id", "shop_id", "status"]) == ["status"]
    odd = cfg.table("shop.odd.name")
    assert (odd.schema, odd.table) == ("shop", "odd.name")
    assert odd.render_key({"id": 1}) == "{literal}:1"
    assert odd.value_columns(["id", "a b", "c"]) == ["id", "a b"]


def test_an_empty_file_sets_nothing() -> None:
    cfg = parse({})
    assert cfg.gearman is None and cfg.redis_url is None  # Settings keep their defaults
    assert cfg.mysql_url is None and cfg.tables == {}


@pytest.mark.parametrize("doc, message", [
    ({"tables": {"users": {"key": "u:{id}"}}}, "tables.'users': the table must be named \"schema.table\""),
    ({"tables": {"s.t": {}}}, "tables.'s.t'.key: missing"),
    ({"tables": {"s.t": {"key": "u"}}}, "tables.'s.t'.key: the key template 'u' names no column"),
    ({"tables": {"s.t": {"key": "u:{id"}}}, "tables.'s.t'.key: bad template"),
    ({"tables": {"s.t": {"key": "u:{id!r}"}}}, "must be a bare column name"),
    ({"tables": {"s.t": {"key": "u:{a.b}"}}}, "must be a bare column name"),
    ({"tables": {"s.t": {"key": "u:{id}", "value": "xml"}}}, "tables.'s.t'.value: 'xml' is not one of json, hash, column"),
    ({"tables": {"s.t": {"key": "u:{id}", "value": "column"}}}, "tables.'s.t'.column: value = \"column\" needs"),
    ({"tables": {"s.t": {"key": "u:{id}", "column": "name"}}}, "tables.'s.t'.column: only used with"),
    ({"tables": {"s.t": {"key": "u:{id}", "ttl": 0}}}, "tables.'s.t'.ttl: expected a positive number"),
    ({"tables": {"s.t": {"key": "u:{id}", "ttl": True}}}, "tables.'s.t'.ttl"),
    ({"tables": {"s.t": {"key": "u:{id}", "mode": "fast"}}}, "tables.'s.t'.mode: 'fast' is not one of safe, direct"),
    ({"tables": {"s.t": {"key": "u:{id}", "colums": ["a"]}}}, "tables.'s.t': unknown field 'colums'"),
    ({"tables": {"s.t": {"key": "u:{id}", "columns": []}}}, "tables.'s.t'.columns: expected a non-empty list"),
    ({"tables": {"s.t": {"key": "u:{id}", "columns": ["a", "a"]}}}, "'a' is listed twice"),
    ({"tables": {"s.t": {"key": "u:{id}", "columns": ["a"], "exclude": ["a"]}}}, "'a' is also in columns"),
    ({"gearman": {"servers": []}}, "gearman.servers: expected a non-empty list"),
    ({"redis": {"url": 5}}, "redis.url: expected a non-empty string"),
    ({"redsi": {}}, "unknown section 'redsi'"),
])
def test_errors_name_the_file_the_table_and_the_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(doc, source="conf/gearsync.toml")
    assert str(e.value).startswith("conf/gearsync.toml: ")
    assert message in str(e.value)


def test_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[tables\nkey=")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load(bad)


def test_null_key_column_is_refused() -> None:
    t = parse({"tables": {"s.t": {"key": "u:{id}"}}}).table("s.t")
    with pytest.raises(ValueError, match="key column 'id' is NULL"):
        t.render_key({"id": None})
    with pytest.raises(ValueError, match="no key column 'id'"):
        t.render_key({})


def test_schema_check_against_the_live_database(stack: Any) -> None:
    """Unknown tables and columns are caught before anything is installed."""
    conn = stack.mysql.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS cfgcheck")
            cur.execute("CREATE TABLE IF NOT EXISTS cfgcheck.`odd.name` (id INT PRIMARY KEY, `a b` TEXT, secret TEXT)")
        good = parse({"tables": {"cfgcheck.`odd.name`": {"key": "o:{id}", "exclude": ["secret"]}}}, source="g.toml")
        cols = live_columns(conn, [("cfgcheck", "odd.name"), ("cfgcheck", "nope")])
        assert cols == {("cfgcheck", "odd.name"): ["id", "a b", "secret"]}
        check_schema(good, cols)
        missing_col = parse({"tables": {"cfgcheck.`odd.name`": {"key": "o:{uid}"}}}, source="g.toml")
        with pytest.raises(ConfigError, match=r"g\.toml: tables\.'cfgcheck\.`odd\.name`'\.key: no column 'uid'"):
            check_schema(missing_col, cols)
        missing_table = parse({"tables": {"cfgcheck.nope": {"key": "o:{id}"}}}, source="g.toml")
        with pytest.raises(ConfigError, match="no such table in the database"):
            check_schema(missing_table, live_columns(conn, [("cfgcheck", "nope")]))
    finally:
        conn.close()


@pytest.mark.parametrize("extra, message", [
    ('where = 5', "tables.'s.t'.where: expected a non-empty string"),
    ('fields = ["a"]', "tables.'s.t'.fields: expected a table"),
    ('fields = { a = "" }', "tables.'s.t'.fields.a: expected a non-empty string"),
    ('columns = ["a"]\nfields = { a = "b" }', "tables.'s.t'.fields: 'a' is also in columns"),
    ('[[tables."s.t".targets]]\ntype = "list"\nkey = "l"', "targets[0].type: 'list' is not one of set, zset, stream"),
    ('[[tables."s.t".targets]]\ntype = "set"\nkey = "s:{x}"', "targets[0].member: expected a template"),
    ('[[tables."s.t".targets]]\ntype = "zset"\nkey = "z"\nmember = "{id}"', "targets[0].score: type = \"zset\" needs"),
    ('[[tables."s.t".targets]]\ntype = "stream"\nkey = "ev:{id}"', "targets[0].key: a stream's key is one fixed name"),
    ('[[tables."s.t".targets]]\ntype = "stream"\nkey = "ev"\nmaxlen = 0', "targets[0].maxlen: expected a positive"),
    ('[[tables."s.t".targets]]\ntype = "stream"\nkey = "ev"\nmember = "{id}"', "targets[0].member: only for"),
    ('[[tables."s.t".targets]]\ntype = "set"\nkey = "gearsync:x"\nmember = "{id}"', "targets[0].key: keys under"),
    ('[[tables."s.t".targets]]\ntype = "set"\nkey = "s"\nmember = "{id!r}"', "targets[0].member: bad template"),
])
def test_mapping_power_errors_name_the_field(extra: str, message: str) -> None:
    from gearsync.config import tomllib

    doc = tomllib.loads('[tables."s.t"]\nkey = "k:{id}"\n' + extra + "\n")
    with pytest.raises(ConfigError) as e:
        parse(doc, source="f.toml")
    assert message in str(e.value), str(e.value)


def test_fields_replace_the_columns_unless_columns_are_named() -> None:
    only = parse({"tables": {"s.t": {"key": "k:{id}", "fields": {"full": "CONCAT(a, b)"}}}}).table("s.t")
    assert only.value_columns(["id", "a", "b"]) == [] and only.field_names == ("full",)
    both = parse({"tables": {"s.t": {"key": "k:{id}", "columns": ["id"], "fields": {"full": "a"}}}}).table("s.t")
    assert both.value_columns(["id", "a", "b"]) == ["id"]
    col = parse({"tables": {"s.t": {"key": "k:{id}", "value": "column", "column": "full",
                                    "fields": {"full": "a"}}}}).table("s.t")
    assert col.value_columns(["id", "a"]) == []
