"""Where MariaDB and MySQL differ, each difference pinned by a test that runs on both servers
(``make test`` on MariaDB, ``make test-mysql`` on MySQL) and asserts what the code must do there.

* Accounts: MySQL's default authentication is ``caching_sha2_password``. Its first login of an
  account (and every one after a server restart or ``FLUSH PRIVILEGES``) is a full
  authentication, which sends the password over TLS or, without TLS, RSA-encrypted with the
  server's public key: PyMySQL needs the ``cryptography`` package for that (a dependency of
  gearsync since), mysqlclient does it in C.
* JSON columns: MySQL's JSON is a type of its own, MariaDB's a LONGTEXT with a ``json_valid``
  check (found through information_schema, which names the check's table differently there).
* Primary keys travel through the server's ``JSON_ARRAY``: MySQL prints a DATETIME or TIME
  with six fractional digits, MariaDB as the column is declared, and MySQL 9.7 does not find a
  TIME(3) row by ``(t, id) IN (('12:00:00.500000', 1))`` — the read of a batch with one change
  of the table. So the triggers send temporal keys as the column's own text (the same on both
  servers). (A DECIMAL key beyond a double's precision was lost in direct mode too: the job
  was parsed into a float.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import install as inst
from gearsync import outbox
from gearsync.config import parse
from gearsync.connections import connect_mysql
from gearsync.scan import TableReader
from gearsync.schema import resolve_table
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import SqlServer, Stack, sql_server

from helpers import SERVER, execute

#: The plugin a new account gets without IDENTIFIED WITH.
DEFAULT_AUTH = {"mariadb": "mysql_native_password", "mysql": "caching_sha2_password"}


@pytest.fixture(scope="module")
def plain(udf_so: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlServer]:
    """A server of the suite's kind that offers no TLS (MySQL: --tls-version=''; MariaDB has
    none without certificates), with gearsync's outbox."""
    extra = ["--tls-version="] if SERVER == "mysql" else []
    with sql_server(tmp_path_factory.mktemp("plain"), SERVER, plugin_dir=udf_so.parent, extra_args=extra) as m:
        conn = m.connect()
        try:
            outbox.ensure(conn)
        finally:
            conn.close()
        yield m


@pytest.mark.parametrize("driver", ["pymysql", "mysqlclient"])
def test_a_password_account_reaches_the_outbox_without_tls(plain: SqlServer, driver: str) -> None:
    user = f"gs_{driver}"
    plain.execute(f"CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY 'pw s3cret'")
    plain.execute(f"GRANT SELECT, DELETE ON gearsync.outbox TO '{user}'@'127.0.0.1'")
    plain.execute("FLUSH PRIVILEGES")  # empties caching_sha2_password's cache: a full authentication
    assert plain.execute("SELECT plugin FROM mysql.user WHERE user = %s", (user,)) == [(DEFAULT_AUTH[SERVER],)]
    url = f"mysql://{user}:pw%20s3cret@127.0.0.1:{plain.port}/"
    for _ in range(2):  # the full authentication, then (MySQL) the cached one
        conn = connect_mysql(url, driver=driver)
        try:
            assert execute(conn, "SELECT CURRENT_USER()") == [(f"{user}@127.0.0.1",)]
            cipher = execute(conn, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cipher == [] or cipher[0][1] in ("", None), cipher  # really without TLS
        finally:
            conn.close()
    box = outbox.Outbox(url, driver=driver)
    try:
        assert box.stats() == (0, None)  # the worker's own connection, as the worker makes it
    finally:
        box.close()


def test_json_columns_are_json_on_either_server(stack: Stack, mysql: Any) -> None:
    execute(mysql, "DROP DATABASE IF EXISTS gs_srv_json")
    execute(mysql, "CREATE DATABASE gs_srv_json")
    try:
        # a text column checked as JSON (MariaDB's JSON type is exactly that), a check of another
        # kind, and in a second table a same-named column with another check
        execute(mysql, "CREATE TABLE gs_srv_json.t (id INT PRIMARY KEY, j JSON, x LONGTEXT CHECK (json_valid(x)), "
                       "y INT CHECK (y > 0), z LONGTEXT)")
        execute(mysql, "CREATE TABLE gs_srv_json.u (id INT PRIMARY KEY, z LONGTEXT CHECK (json_valid(z)))")
        cfg = parse({"tables": {"gs_srv_json.t": {"key": "t:{id}", "value": "json"}}})
        rt = resolve_table(mysql, cfg.table("gs_srv_json.t"))
        assert dict(rt.kinds) == {"id": "int", "j": "json", "x": "json", "y": "int", "z": "text"}
    finally:
        execute(mysql, "DROP DATABASE gs_srv_json")


KEYS_DB = "gs_srv_keys"


@pytest.fixture
def keyed(mysql: Any) -> Iterator[Any]:
    execute(mysql, f"DROP DATABASE IF EXISTS {KEYS_DB}")
    execute(mysql, f"CREATE DATABASE {KEYS_DB}")
    for mode in ("safe", "direct"):
        execute(mysql, f"CREATE TABLE {KEYS_DB}.ev_{mode} (at DATETIME NOT NULL, t TIME(3) NOT NULL, "
                       f"amount DECIMAL(20,2) NOT NULL, name VARCHAR(20), PRIMARY KEY (at, t, amount))")
    execute(mysql, "DELETE FROM gearsync.outbox")
    yield mysql
    execute(mysql, f"DROP DATABASE IF EXISTS {KEYS_DB}")


def test_temporal_and_decimal_primary_keys_arrive_in_both_modes(
        stack: Stack, keyed: Any, redis_client: Any, safe_env: dict[str, str], tmp_path: Path) -> None:
    tables = {f"{KEYS_DB}.ev_{mode}": {"key": f"{mode}:{{at}}|{{t}}|{{amount}}", "value": "column",
                                       "column": "name", "mode": mode} for mode in ("safe", "direct")}
    inst.install(parse({"tables": tables}), keyed)
    cfg_file = tmp_path / "gearsync.toml"
    cfg_file.write_text(f'[mysql]\nurl = "{stack.mysql_url}"\n' + "".join(
        f'[tables."{name}"]\n' + "".join(f'{k} = "{v}"\n' for k, v in t.items()) for name, t in tables.items()))
    w = WorkerProcess(safe_env, ["--config", str(cfg_file)], log_path=tmp_path / "worker.log",
                      gearmand=stack.gearmand, function="gearsync_direct").start()
    try:
        for mode in ("safe", "direct"):
            t = f"{KEYS_DB}.ev_{mode}"
            execute(keyed, f"INSERT INTO {t} VALUES ('2024-01-02 03:04:05', '12:00:00.5', "
                           f"12345678901234567.89, 'a'), ('2024-01-03 00:00:00', '-838:59:59', 0, 'b')")
            execute(keyed, f"UPDATE {t} SET name = 'a2' WHERE amount > 1")
            execute(keyed, f"DELETE FROM {t} WHERE amount = 0")
        want = {b"safe:2024-01-02 03:04:05|12:00:00.500|12345678901234567.89": b"a2",
                b"direct:2024-01-02 03:04:05|12:00:00.500|12345678901234567.89": b"a2"}

        def state() -> dict[bytes, bytes]:
            keys = [k for k in redis_client.keys("*") if not k.startswith(b"gearsync:")]
            return dict(zip(keys, redis_client.mget(keys))) if keys else {}
        try:
            wait_for(lambda: state() == want, 20, 0.05, "both modes' keys")
        except AssertionError:
            raise AssertionError(f"Redis {state()}, want {want}; outbox "
                                 f"{execute(keyed, 'SELECT k, op, pk FROM gearsync.outbox')}; worker:\n"
                                 f"{w.output()[-3000:]}") from None
    finally:
        w.stop()
    assert " skipped: " not in w.output() and "Traceback" not in w.output(), w.output()[-3000:]
    # what the triggers wrote as the primary key (the same text on both servers), and a read of
    # that one row by it, as the worker reads a batch with one change of the table
    execute(keyed, f"INSERT INTO {KEYS_DB}.ev_safe VALUES ('2024-01-04 00:00:00', '01:00:00', 1.50, 'c')")
    (pk,), = execute(keyed, "SELECT pk FROM gearsync.outbox ORDER BY id DESC LIMIT 1")
    values = json.loads(pk, parse_float=str)
    assert values == ["2024-01-04 00:00:00", "01:00:00.000", "1.50"]
    reader = TableReader(parse({"tables": tables}).table(f"{KEYS_DB}.ev_safe"), lambda: keyed)
    for lock in (False, True):
        found = reader.by_keys([values], lock=lock)
        assert [k for k, _v in found.rows] == [b"safe:2024-01-04 00:00:00|01:00:00.000|1.50"], lock
