"""What DBAs do to configured tables and to gearsync's own, while the application writes:
DDL on a configured table, TRUNCATE of the outbox, a dump and restore, uninstalling in the
wrong order, installing before the outbox exists. The application's writes never fail, and
Redis ends equal to the tables."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pymysql
import pytest

from gearsync import install as inst
from gearsync.config import ConfigError, parse
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import free_port

from helpers import REPO_ROOT, converge, execute, redis_state

DB = "gs_ops"


@pytest.fixture
def ops(mysql: Any) -> Iterator[Any]:
    execute(mysql, f"DROP DATABASE IF EXISTS {DB}")
    execute(mysql, f"CREATE DATABASE {DB}")
    for mode in ("safe", "direct"):
        execute(mysql, f"CREATE TABLE {DB}.t_{mode} (id INT NOT NULL PRIMARY KEY, a INT, b VARCHAR(20), "
                       "c DECIMAL(10,2))")
    execute(mysql, "DELETE FROM gearsync.outbox")
    yield mysql
    execute(mysql, f"DROP DATABASE IF EXISTS {DB}")


def _config(stack: Any) -> Any:
    return parse({"mysql": {"url": stack.mysql_url}, "redis": {"url": stack.redis_url}, "tables": {
        f"{DB}.t_{mode}": {"key": f"{mode}:{{id}}", "mode": mode} for mode in ("safe", "direct")}})


def _config_file(stack: Any, tmp_path: Path) -> Path:
    p = tmp_path / "gearsync.toml"
    p.write_text(f'[mysql]\nurl = "{stack.mysql_url}"\n' + "".join(
        f'[tables."{DB}.t_{mode}"]\nkey = "{mode}:{{id}}"\nmode = "{mode}"\n' for mode in ("safe", "direct")))
    return p


def _table(conn: Any, mode: str) -> dict[bytes, Any]:
    """What Redis must hold for a table: its rows as JSON objects (ints and strings here)."""
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM {DB}.t_{mode}")
        return {f"{mode}:{r['id']}".encode(): {k: (str(v) if hasattr(v, "as_tuple") else v) for k, v in r.items()}
                for r in cur.fetchall()}


def _redis(r: Any, mode: str) -> dict[bytes, Any]:
    keys = list(r.scan_iter(match=f"{mode}:*".encode()))
    return {k: json.loads(v) for k, v in zip(keys, r.mget(keys)) if v is not None} if keys else {}


class Writers:
    """Application threads writing both tables without pause; every error they get is kept."""

    def __init__(self, stack: Any, n: int = 2) -> None:
        self.stack, self.stop, self.errors, self.writes = stack, threading.Event(), [], 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i: int) -> None:
        conn = self.stack.mysql.connect()
        rnd = random.Random(i)
        while not self.stop.is_set():
            mode = rnd.choice(("safe", "direct"))
            rid = rnd.randrange(1, 60)
            try:
                with conn.cursor() as cur:
                    if rnd.random() < 0.1:
                        cur.execute(f"DELETE FROM {DB}.t_{mode} WHERE id = %s", (rid,))
                    else:
                        cur.execute(f"INSERT INTO {DB}.t_{mode} (id, b) VALUES (%s, %s) "
                                    f"ON DUPLICATE KEY UPDATE b = VALUES(b)", (rid, f"w{i}-{self.writes}"))
                self.writes += 1
            except pymysql.err.OperationalError as e:
                if e.args[0] in (1205, 1213):  # lock wait / deadlock with the DDL: the application's lot
                    continue
                self.errors.append(repr(e))
            except Exception as e:  # noqa: BLE001 - every other error is what the test looks for
                self.errors.append(repr(e))
        conn.close()

    def __enter__(self) -> "Writers":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def test_ddl_while_writers_run(stack: Any, ops: Any, redis_client: Any, tmp_path: Path,
                               safe_env: dict[str, str]) -> None:
    """ADD, DROP, MODIFY and RENAME COLUMN on configured tables in both modes under a stream of
    writes: 0 failed application writes, and Redis equals the tables afterwards (rows not
    written since the DDL included: the worker refreshes a table whose columns changed)."""
    inst.install(_config(stack), ops)
    w = WorkerProcess(safe_env, ["--config", str(_config_file(stack, tmp_path))], log_path=tmp_path / "w.log",
                      gearmand=stack.gearmand, function="gearsync_direct").start()
    try:
        with Writers(stack) as writers:
            time.sleep(0.5)
            for mode in ("safe", "direct"):
                for ddl in ("ADD COLUMN d INT NOT NULL DEFAULT 7", "DROP COLUMN c", "MODIFY b VARCHAR(40)",
                            "RENAME COLUMN a TO a2", "MODIFY a2 BIGINT", "ADD COLUMN e VARCHAR(5) DEFAULT 'x' FIRST"):
                    execute(ops, f"ALTER TABLE {DB}.t_{mode} {ddl}")
                    time.sleep(0.3)
            time.sleep(0.5)
        assert writers.errors == [] and writers.writes > 100
        for mode in ("safe", "direct"):
            wait_for(lambda: _redis(redis_client, mode) == _table(ops, mode), 30, 0.2,
                     f"Redis to equal {DB}.t_{mode}")
        assert list(next(iter(_redis(redis_client, "safe").values()))) == ["e", "id", "a2", "b", "d"]
    finally:
        w.stop()
    assert "Traceback" not in w.output()


def test_the_outbox_broken_by_hand_fails_no_write_and_loses_no_change(
        stack: Any, ops: Any, redis_client: Any, tmp_path: Path, safe_env: dict[str, str]) -> None:
    """A DBA renames the outbox away, makes one without a column the triggers fill, drops
    gearsync_seq: under a stream of writes, no application write fails (the trigger catches
    the outbox's error and sends the change as a direct-mode job naming the row), every change
    still arrives, `gearsync status` exits 1 while the outbox is broken or the function is gone
    (naming it), and `gearsync install` mends it."""
    inst.install(_config(stack), ops)
    cfg_file = _config_file(stack, tmp_path)
    cfg_file.write_text(cfg_file.read_text().replace("[mysql]", f'[redis]\nurl = "{stack.redis_url}"\n[mysql]'))
    status = [sys.executable, "-m", "gearsync", "status", "--config", str(cfg_file)]
    w = WorkerProcess(safe_env, ["--config", str(cfg_file)], log_path=tmp_path / "w.log",
                      gearmand=stack.gearmand, function="gearsync_direct").start()
    execute(ops, "RENAME TABLE gearsync.outbox TO gearsync.outbox_saved")
    try:
        with Writers(stack) as writers:
            wait_for(lambda: writers.writes > 100, 30, 0.05, "writes without an outbox")
            bad = subprocess.run(status, capture_output=True, text=True, env=safe_env)
            execute(ops, "CREATE TABLE gearsync.outbox LIKE gearsync.outbox_saved")
            execute(ops, "ALTER TABLE gearsync.outbox DROP COLUMN pk")
            n = writers.writes
            wait_for(lambda: writers.writes > n + 100, 30, 0.05, "writes into an outbox without its pk column")
            worse = subprocess.run(status, capture_output=True, text=True, env=safe_env)
            done = inst.install(_config(stack), ops)
            execute(ops, "DROP FUNCTION gearsync_seq")
            try:
                n = writers.writes
                wait_for(lambda: writers.writes > n + 100, 30, 0.05, "writes without gearsync_seq")
                no_seq = subprocess.run(status, capture_output=True, text=True, env=safe_env)
            finally:
                execute(ops, "CREATE FUNCTION gearsync_seq RETURNS INTEGER SONAME 'gearsync_udf.so'")
            # a trigger parsed while the function was missing keeps calling a stored function of
            # that name until it is parsed again: install creates the triggers anew (FLUSH TABLES would do)
            inst.install(_config(stack), ops)
            n = writers.writes
            wait_for(lambda: writers.writes > n + 100, 30, 0.05, "writes after the repair")
        assert writers.errors == []
        assert bad.returncode == 1 and "outbox" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
        assert worse.returncode == 1 and "pk" in worse.stdout + worse.stderr, worse.stdout + worse.stderr
        assert done.done == ["added `gearsync`.`outbox`.`pk`"]
        assert no_seq.returncode == 1 and "the UDF gearsync_seq, which the installed triggers call, does not " \
            "answer" in no_seq.stdout, no_seq.stdout + no_seq.stderr
        for mode in ("safe", "direct"):
            wait_for(lambda: _redis(redis_client, mode) == _table(ops, mode), 30, 0.2,
                     f"Redis to equal {DB}.t_{mode}")
        # repaired: the safe table's changes go through the outbox again
        execute(ops, "BEGIN")
        execute(ops, f"INSERT INTO {DB}.t_safe (id, b) VALUES (1000, 'back')")
        assert execute(ops, "SELECT COUNT(*) FROM gearsync.outbox WHERE k = 'safe:1000'")[0][0] == 1
        execute(ops, "COMMIT")
        wait_for(lambda: _redis(redis_client, "safe") == _table(ops, "safe"), 30, 0.2, "the change after the repair")
        assert subprocess.run(status, capture_output=True, text=True, env=safe_env).returncode == 0
    finally:
        w.stop()
        execute(ops, "DROP TABLE IF EXISTS gearsync.outbox")
        execute(ops, "RENAME TABLE gearsync.outbox_saved TO gearsync.outbox")
    assert "Traceback" not in w.output()


def test_install_again_under_writers_loses_no_change(stack: Any, ops: Any, redis_client: Any, tmp_path: Path,
                                                     safe_env: dict[str, str]) -> None:
    """`gearsync install` run again and again while the application writes (a mapping changed,
    an upgrade): each table's triggers are replaced under a write lock, so no write falls
    between the old triggers and the new — Redis equals both tables afterwards. A login that
    may not lock a table is refused before anything changes, unless it has no triggers yet."""
    inst.install(_config(stack), ops)
    w = WorkerProcess(safe_env, ["--config", str(_config_file(stack, tmp_path))], log_path=tmp_path / "w.log",
                      gearmand=stack.gearmand, function="gearsync_direct").start()
    try:
        with Writers(stack, n=3) as writers:
            for _ in range(15):
                n = writers.writes
                inst.install(_config(stack), ops)
                wait_for(lambda: writers.writes > n + 20, 30, 0.01, "writes between installs")
        assert writers.errors == [] and writers.writes > 300
        for mode in ("safe", "direct"):
            wait_for(lambda: _redis(redis_client, mode) == _table(ops, mode), 30, 0.2,
                     f"Redis to equal {DB}.t_{mode}")
    finally:
        w.stop()
    user = "gs_nolock"
    execute(ops, f"DROP USER IF EXISTS '{user}'@'%'")
    execute(ops, f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
    execute(ops, f"GRANT SELECT, TRIGGER ON {DB}.* TO '{user}'@'%'")
    execute(ops, f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER ON gearsync.* TO '{user}'@'%'")
    execute(ops, f"CREATE TABLE {DB}.fresh (id INT NOT NULL PRIMARY KEY, b VARCHAR(20))")
    login = stack.mysql.connect(user=user, password="pw")
    try:
        before = execute(ops, "SELECT action_statement FROM information_schema.triggers WHERE event_object_schema = "
                              "%s ORDER BY trigger_name", (DB,))
        with pytest.raises(ConfigError, match="cannot lock the table to replace its triggers"):
            inst.install(_config(stack), login)
        assert execute(ops, "SELECT action_statement FROM information_schema.triggers WHERE event_object_schema = "
                            "%s ORDER BY trigger_name", (DB,)) == before
        fresh = parse({"tables": {f"{DB}.fresh": {"key": "fresh:{id}"}}})
        assert inst.install(fresh, login) == [f"{DB}.fresh"]  # no triggers yet: nothing to fall between
    finally:
        login.close()
        execute(ops, f"DROP USER IF EXISTS '{user}'@'%'")


def test_truncating_the_outbox_loses_no_later_change(stack: Any, safe_worker: WorkerProcess, safe_mysql: Any,
                                                    redis_client: Any) -> None:
    """Versions come from gearsync_seq(), not from the outbox's AUTO_INCREMENT: after TRUNCATE
    (ids start again at 1) every later change still wins over what Redis holds."""
    m = safe_mysql
    for i in range(20):
        execute(m, "INSERT INTO test.test_safe VALUES (1, %s) ON DUPLICATE KEY UPDATE name = VALUES(name)", (f"v{i}",))
    converge(m, redis_client)
    before = int(redis_client.get(b"gearsync:v:test_safe:1"))
    execute(m, "TRUNCATE gearsync.outbox")
    execute(m, "BEGIN")
    execute(m, "UPDATE test.test_safe SET name = 'after-truncate' WHERE id = 1")
    assert execute(m, "SELECT MAX(id) FROM gearsync.outbox")[0][0] == 1  # the ids went back
    execute(m, "COMMIT")
    converge(m, redis_client)
    assert redis_state(redis_client) == {b"test_safe:1": b"after-truncate"}
    assert int(redis_client.get(b"gearsync:v:test_safe:1")) > before


def test_dump_and_restore_loses_no_later_change(stack: Any, safe_worker: WorkerProcess, safe_mysql: Any,
                                                redis_client: Any, tmp_path: Path) -> None:
    """mariadb-dump of the database, changes, then the dump restored (outbox ids and rows go
    back): the changes made after the restore arrive; verify --repair heals the rest."""
    m = safe_mysql
    execute(m, "INSERT INTO test.test_safe VALUES (1, 'a'), (2, 'b')")
    converge(m, redis_client)
    dump = tmp_path / "dump.sql"
    with open(dump, "wb") as f:
        subprocess.run(stack.mysql.dump_argv("--databases", "test", "gearsync"), stdout=f, check=True)
    for i in range(30):
        execute(m, "UPDATE test.test_safe SET name = %s WHERE id = 1", (f"n{i}",))
    converge(m, redis_client)
    stack.mysql.source(dump)  # the restore: test_safe back to (a, b), the outbox to its old state
    execute(m, "UPDATE test.test_safe SET name = 'after-restore' WHERE id = 2")
    wait_for(lambda: redis_client.get(b"test_safe:2") == b"after-restore", 15, 0.05, "the change after the restore")
    assert redis_client.get(b"test_safe:1") == b"n29"  # the restored row: stale until repaired, as documented


def test_uninstall_sql_refuses_while_config_triggers_call_the_functions(stack: Any, ops: Any) -> None:
    inst.install(_config(stack), ops)
    with pytest.raises(Exception, match="triggers still call its functions: "):
        stack.mysql.source(REPO_ROOT / "sql" / "uninstall.sql")
    # nothing was dropped: the application's writes still work, and still reach the outbox
    execute(ops, f"INSERT INTO {DB}.t_safe (id, b) VALUES (1, 'x')")
    assert execute(ops, "SELECT COUNT(*) FROM gearsync.outbox WHERE source = %s", (f"{DB}.t_safe",))[0][0] == 1
    assert execute(ops, "SELECT gearsync_seq() > 0")[0][0] == 1
    inst.uninstall(_config(stack), ops)
    stack.mysql.source(REPO_ROOT / "sql" / "uninstall.sql")  # now it goes through
    try:
        execute(ops, f"INSERT INTO {DB}.t_safe (id, b) VALUES (2, 'y')")  # no trigger left to fail
        with pytest.raises(pymysql.err.OperationalError):
            execute(ops, "SELECT gearsync_seq()")
    finally:
        stack.install_sql()


def test_install_checks_udfs_and_creates_the_outbox(stack: Any, ops: Any) -> None:
    cfg = _config(stack)
    # gearsync_send_change: what a server still running an older library lacks after an upgrade
    for name, returns in (("gearsync_seq", "INTEGER"), ("gearsync_send_change", "STRING")):
        execute(ops, f"DROP FUNCTION {name}")
        try:
            with pytest.raises(ConfigError, match=f"the UDF {name} is not registered"):
                inst.install(cfg, ops)
            assert execute(ops, "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = %s",
                           (DB,)) == [(0,)]
        finally:
            execute(ops, f"CREATE FUNCTION {name} RETURNS {returns} SONAME 'gearsync_udf.so'")
    execute(ops, "RENAME TABLE gearsync.outbox TO gearsync.outbox_saved")
    try:
        execute(ops, "CREATE TABLE gearsync.outbox (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                     "source VARCHAR(192) NOT NULL, k VARBINARY(3072) NOT NULL, old_k VARBINARY(3072), "
                     "op ENUM('insert','update','delete') NOT NULL, `row` LONGTEXT, "
                     "created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))")  # gearsync 0.1's outbox
        done = inst.install(cfg, ops)
        assert done.done == ["added `gearsync`.`outbox`.`pk`", "added `gearsync`.`outbox`.`ver`"]
        execute(ops, f"INSERT INTO {DB}.t_safe (id) VALUES (1)")
        execute(ops, "DROP TABLE gearsync.outbox")
        done = inst.install(cfg, ops)
        assert done.done == ["created `gearsync`.`outbox`"]
        execute(ops, f"INSERT INTO {DB}.t_safe (id) VALUES (2)")
    finally:
        execute(ops, "DROP TABLE IF EXISTS gearsync.outbox")
        execute(ops, "RENAME TABLE gearsync.outbox_saved TO gearsync.outbox")


def test_install_warns_about_myisam_and_cascades(stack: Any, ops: Any) -> None:
    execute(ops, f"CREATE TABLE {DB}.parent (id INT PRIMARY KEY) ENGINE=InnoDB")
    execute(ops, f"CREATE TABLE {DB}.child (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES {DB}.parent (id) "
                 "ON DELETE CASCADE) ENGINE=InnoDB")
    execute(ops, f"CREATE TABLE {DB}.plain (id INT PRIMARY KEY, v INT) ENGINE=MyISAM")
    cfg = parse({"tables": {f"{DB}.child": {"key": "c:{id}"}, f"{DB}.plain": {"key": "p:{id}"}}})
    done = inst.install(cfg, ops)
    assert any("child: foreign key" in w and "ON DELETE CASCADE" in w for w in done.warnings)
    assert any("plain uses MyISAM" in w for w in done.warnings)


def test_a_configured_column_dropped_is_reported_and_writes_go_on(stack: Any, ops: Any, redis_client: Any,
                                                                  tmp_path: Path, safe_env: dict[str, str]) -> None:
    """`columns = ["b", "c"]`, then DROP COLUMN c: the application's writes keep working, the
    worker skips (and counts) what it cannot map, `gearsync status` says DRIFT and exits 1."""
    cfg_file = tmp_path / "g.toml"
    cfg_file.write_text(f'[mysql]\nurl = "{stack.mysql_url}"\n[redis]\nurl = "{stack.redis_url}"\n'
                        f'[tables."{DB}.t_safe"]\nkey = "s:{{id}}"\nvalue = "hash"\ncolumns = ["b", "c"]\n')
    inst.install(parse({"tables": {f"{DB}.t_safe": {"key": "s:{id}", "value": "hash", "columns": ["b", "c"]}}}), ops)
    status = [sys.executable, "-m", "gearsync", "status", "--config", str(cfg_file)]
    port = free_port()
    w = WorkerProcess(safe_env, ["--config", str(cfg_file), "--metrics-port", str(port)],
                      log_path=tmp_path / "w.log", gearmand=stack.gearmand, function="gearsync").start()
    try:
        wait_for(lambda: stack.gearmand.queued("gearsync") == 0, 10, 0.05, "doorbells of earlier tests handled")
        ok = subprocess.run(status, capture_output=True, text=True, env=safe_env)
        assert ok.returncode == 0 and f"table {DB}.t_safe: ok" in ok.stdout, ok.stdout + ok.stderr
        execute(ops, f"INSERT INTO {DB}.t_safe (id, b, c) VALUES (1, 'x', 1.5)")
        wait_for(lambda: redis_client.hgetall("s:1") == {b"b": b"x", b"c": b"1.50"}, 10, 0.05)
        execute(ops, f"ALTER TABLE {DB}.t_safe DROP COLUMN c")
        execute(ops, f"UPDATE {DB}.t_safe SET b = 'y' WHERE id = 1")  # the write works
        wait_for(lambda: "gearsync_table_schema_drift{table=\"gs_ops.t_safe\"} 1" in _scrape(port), 10, 0.1,
                 "the drift metric")
        assert 'gearsync_changes_skipped_total{mode="safe"} 1' in _scrape(port)
        bad = subprocess.run(status, capture_output=True, text=True, env=safe_env)
        assert bad.returncode == 1 and "DRIFT" in bad.stdout and "no column 'c'" in bad.stdout, bad.stdout
    finally:
        w.stop()


def _scrape(port: int) -> str:
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
