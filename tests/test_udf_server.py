"""The UDF library inside a real server (mariadbd, or MySQL's mysqld: GEARSYNC_TEST_SERVER): every function through SQL, the nesting rule,
strict-mode triggers, failover between two gearmand, the circuit breaker, the config file
across a server restart, and a concurrency test with mariadbd's RSS bound.

These tests run their own server (module scope) whose plugin dir holds a copy of the
library, so they can write its config file and restart it without disturbing the session
stack.  Environment:
  GEARSYNC_SERVER_ASAN=1      load build/asan/gearsync_udf.so (make udf-asan) into mariadbd
                              with the ASan runtime LD_PRELOADed (make udf-server-asan)
  GEARSYNC_STRESS_ROWS=N      rows per connection per round of the concurrency test
                              (default 1000; make udf-stress uses 5000)
  GEARSYNC_STRESS_ROUNDS=N    rounds (default 4; make udf-stress uses 8)
  GEARSYNC_STRESS_CONTROL=1   the same workload with triggers that call no UDF: mariadbd's
                              own RSS curve, to compare with (make udf-stress runs both)
  GEARSYNC_STRESS_RSS_BOUND_MIB=N  RSS growth bound after the first round (default 48;
                              make udf-stress uses 96: 8 rounds x 80,000 rows)
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import pymysql
import pytest

from gearsync.testing.sqlserver import numbers
from gearsync.testing.stack import Gearmand, SqlServer, free_port, sql_server
from gearsync.testing.processes import wait_for

from helpers import REPO_ROOT, SERVER
from gearman_peers import CliWorker

ASAN = os.environ.get("GEARSYNC_SERVER_ASAN") == "1"
STRESS_ROWS = int(os.environ.get("GEARSYNC_STRESS_ROWS", "1000"))
STRESS_ROUNDS = int(os.environ.get("GEARSYNC_STRESS_ROUNDS", "4"))
CONTROL = os.environ.get("GEARSYNC_STRESS_CONTROL") == "1"
RSS_BOUND_MIB = int(os.environ.get("GEARSYNC_STRESS_RSS_BOUND_MIB", "48"))
GEARMAN = shutil.which("gearman") or "/usr/bin/gearman"

STRICT_TRIGGER = """
CREATE TRIGGER {table}_ai AFTER INSERT ON {table} FOR EACH ROW
BEGIN
  IF gman_do_background('{function}', udf_json_object(NEW.id AS id, NEW.name AS name)) IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'gearsync: job not queued';
  END IF;
END"""
LENIENT_TRIGGER = """
CREATE TRIGGER {table}_ai AFTER INSERT ON {table} FOR EACH ROW
  DO gman_do_background('{function}', udf_json_object(NEW.id AS id, NEW.name AS name))"""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def plugin_dir(udf_so: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plugin")
    src = udf_so
    if ASAN:
        subprocess.run(["make", "-s", "-C", str(REPO_ROOT), "udf-asan"], check=True)
        src = REPO_ROOT / "build" / "asan" / "gearsync_udf.so"
    shutil.copy(src, d / "gearsync_udf.so")
    return d


def _asan_env() -> dict:
    if not ASAN:
        return {}
    libs = [subprocess.run(["cc", f"-print-file-name={n}"], capture_output=True, text=True,
                           check=True).stdout.strip() for n in ("libasan.so", "libubsan.so")]
    return {"LD_PRELOAD": " ".join(libs),
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:detect_odr_violation=0:"
                            "log_path=" + str(REPO_ROOT / ".run" / "asan-mariadbd"),
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


@pytest.fixture(scope="module")
def db(plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlServer]:
    """A server of this module, every UDF registered by sql/install.sql."""
    if ASAN:
        (REPO_ROOT / ".run").mkdir(exist_ok=True)
    # A small buffer pool: it fills in the first round of the concurrency test, after
    # which InnoDB's memory stays put and mariadbd's RSS shows what the UDFs keep.
    m = sql_server(tmp_path_factory.mktemp("udfdb"), SERVER, plugin_dir=plugin_dir, env=_asan_env(),
                   extra_args=["--innodb-buffer-pool-size=16M"])
    if ASAN:
        m.start_timeout = 180
    with m:
        m.source(REPO_ROOT / "sql" / "install.sql")
        m.execute("CREATE DATABASE IF NOT EXISTS udft")
        if ASAN:  # the sanitizer runtime and the instrumented library are really loaded
            maps = Path(f"/proc/{m.pid}/maps").read_text()
            assert "libasan" in maps and str(plugin_dir / "gearsync_udf.so") in maps
        yield m
        assert m.running, "mariadbd died"


@pytest.fixture
def conn(db: SqlServer) -> Iterator[Any]:
    c = db.connect(database="udft")
    yield c
    c.close()


@pytest.fixture
def gm(tmp_path: Path) -> Iterator[Gearmand]:
    with Gearmand(tmp_path / "gm") as g:
        yield g


@pytest.fixture
def gm2(tmp_path: Path) -> Iterator[Gearmand]:
    with Gearmand(tmp_path / "gm2") as g:
        yield g


def q(conn: Any, sql: str, args: Any = None) -> list:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def one(conn: Any, sql: str, args: Any = None) -> Any:
    """First column of the first row; UDF strings (binary) decoded as UTF-8."""
    v = q(conn, sql, args)[0][0]
    return v.decode("utf-8") if isinstance(v, bytes) else v


def make_table(conn: Any, table: str, trigger: str, function: str) -> None:
    q(conn, f"DROP TABLE IF EXISTS {table}")
    q(conn, f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(255)) ENGINE=InnoDB")
    q(conn, trigger.format(table=table, function=function))


# ------------------------------------------------------------------ registration

EXPECTED = {
    "udf_json_array": ("str", "function"), "udf_json_object": ("str", "function"),
    "udf_json_members": ("str", "function"), "udf_json_values": ("str", "function"),
    "gman_servers_set": ("str", "function"), "gman_do": ("str", "function"),
    "gman_do_high": ("str", "function"), "gman_do_low": ("str", "function"),
    "gman_do_background": ("str", "function"), "gman_do_high_background": ("str", "function"),
    "gman_do_low_background": ("str", "function"), "gman_sum": ("int", "aggregate"),
    "gearsync_udf_info": ("str", "function"), "gearsync_timeout_set": ("int", "function"),
    "gearsync_do_timeout_set": ("int", "function"), "gearsync_send": ("str", "function"),
    "gearsync_send_flush": ("int", "function"), "gearsync_seq": ("int", "function"),
    "gearsync_send_change": ("str", "function"),
}


def test_install_registers_every_function(conn: Any, db: SqlServer) -> None:
    rows = {r[0]: (r[1], r[2]) for r in q(conn, "SELECT name, ret, type FROM mysql.func")}
    ret = {0: "str", 1: "real", 2: "int", 4: "decimal"}
    got = {k: (ret.get(v[0], v[0]), v[1]) for k, v in rows.items()}
    for name, want in EXPECTED.items():
        assert got.get(name) == want, name
    db.source(REPO_ROOT / "sql" / "install.sql")  # idempotent


def test_classic_json_names_clash_on_this_server(conn: Any) -> None:
    with pytest.raises(pymysql.err.MySQLError) as e:
        q(conn, "CREATE FUNCTION json_object RETURNS STRING SONAME 'gearsync_udf.so'")
    assert e.value.args[0] == 1585


# ------------------------------------------------------------------ JSON through SQL

def test_json_functions_in_sql(conn: Any) -> None:
    out = one(conn, "SELECT udf_json_array(1, 'MARY', NULL, 2.50, 1e0/3, "
                    "CAST('2006-02-15 04:57:20' AS DATETIME), 18446744073709551615)")
    assert json.loads(out) == [1, "MARY", None, 2.5, 1 / 3, "2006-02-15 04:57:20",
                               -1]  # BIGINT UNSIGNED max reaches a UDF as signed -1 (documented)
    assert one(conn, "SELECT udf_json_array(CAST(18446744073709551615 AS DECIMAL(20)))") == \
        "[18446744073709551615]"
    assert one(conn, "SELECT udf_json_values(1, 'a\tb')") == '1,"a\\tb"'
    assert one(conn, "SELECT udf_json_members('a', 1, 'b', NULL)") == '"a":1,"b":null'
    with pytest.raises(pymysql.err.MySQLError) as e:
        q(conn, "SELECT udf_json_members('a')")
    assert "udf_json_members" in str(e.value)


def test_nesting_in_sql(conn: Any) -> None:
    q(conn, "DROP TABLE IF EXISTS docs")
    q(conn, "CREATE TABLE docs (id INT PRIMARY KEY, json_data TEXT, plain TEXT)")
    q(conn, "INSERT INTO docs VALUES (1, '{\"tags\":[\"a\"]}', '{\"x\":1}'), "
            "(2, 'not json {', 'p'), (3, '\"a\":1', 'q'), (4, NULL, NULL), (5, '', '')")
    rows = q(conn, "SELECT udf_json_object(d.id, d.json_data, d.plain, "
                   "udf_json_array(d.id, 'x'), udf_json_members('m', d.id), "
                   "udf_json_object(d.id AS inner_id) AS json_inner) FROM docs d ORDER BY d.id")
    docs = [json.loads(r[0].decode("utf-8")) for r in rows]
    # SQL nesting: udf_json_array(...) expression text is its key, value inserted as JSON;
    # udf_json_members(...) is spliced in as members; AS json_inner nests by alias.
    assert docs[0] == {"id": 1, "json_data": {"tags": ["a"]}, "plain": '{"x":1}',
                       "udf_json_array(d.id, 'x')": [1, "x"], "m": 1, "json_inner": {"inner_id": 1}}
    assert docs[1]["json_data"] == "not json {"  # a json_ column that is not JSON: quoted
    assert docs[2]["a"] == 1 and "json_data" not in docs[2]  # a member list: spliced
    assert docs[3]["json_data"] is None and docs[4]["json_data"] == ""


# ------------------------------------------------------------------ gearman through SQL

def test_gman_do_and_sum(conn: Any, gm: Gearmand) -> None:
    up = CliWorker(gm, "upper", "tr", "a-z", "A-Z")
    ln = CliWorker(gm, "len", "wc", "-c")
    try:
        assert one(conn, "SELECT gman_servers_set(%s)", (gm.address,)) == gm.address
        assert one(conn, "SELECT gman_do('upper', 'hello')") == "HELLO"
        assert one(conn, "SELECT gman_do_high('upper', 'a', 'uniq-1')") == "A"
        assert one(conn, "SELECT gman_do_low('upper', CONCAT('x', 1))") == "X1"
        q(conn, "DROP TABLE IF EXISTS words")
        q(conn, "CREATE TABLE words (g INT, w VARCHAR(20))")
        q(conn, "INSERT INTO words VALUES (1,'a'),(1,'bb'),(2,'ccc'),(2,'dddd'),(2,'e')")
        assert q(conn, "SELECT g, gman_sum('len', w) FROM words GROUP BY g ORDER BY g") == \
            [(1, 3), (2, 8)]
        assert one(conn, "SELECT gman_sum('len', w) FROM words WHERE g = 3") is None
        for fn in ("gman_do_background", "gman_do_high_background", "gman_do_low_background"):
            assert one(conn, f"SELECT {fn}('bgq', 'w')").startswith("H:")
        assert gm.queued("bgq") == 3
        # foreground timeout: a function without a worker
        assert one(conn, "SELECT gearsync_do_timeout_set(300)") == 300
        t = time.monotonic()
        assert one(conn, "SELECT gman_do('nobody', 'x')") is None
        assert 0.25 <= time.monotonic() - t < 3
    finally:
        one(conn, "SELECT gearsync_do_timeout_set(5000)")
        up.stop()
        ln.stop()


def test_servers_set_per_function_in_sql(conn: Any, gm: Gearmand, gm2: Gearmand) -> None:
    one(conn, "SELECT gman_servers_set(%s)", (gm.address,))
    assert one(conn, "SELECT gman_servers_set(%s, 'fnsplit')", (gm2.address,)) == gm2.address
    one(conn, "SELECT gman_do_background('fnsplit', 'x')")
    one(conn, "SELECT gman_do_background('fnother', 'x')")
    assert gm2.queued("fnsplit") == 1 and gm.queued("fnother") == 1
    assert gm.queued("fnsplit") == 0


# ------------------------------------------------------------------ strict mode

def test_strict_trigger_fails_the_write_when_not_queued(conn: Any, gm: Gearmand) -> None:
    make_table(conn, "strict_t", STRICT_TRIGGER, "strictfn")
    make_table(conn, "lenient_t", LENIENT_TRIGGER, "lenientfn")
    one(conn, "SELECT gman_servers_set(%s)", (gm.address,))
    q(conn, "INSERT INTO strict_t VALUES (1, 'a')")
    assert gm.queued("strictfn") == 1
    dead = f"127.0.0.1:{free_port()}"
    one(conn, "SELECT gman_servers_set(%s)", (dead,))
    with pytest.raises(pymysql.err.OperationalError) as e:
        q(conn, "INSERT INTO strict_t VALUES (2, 'b')")
    assert e.value.args[0] == 1644 and "gearsync: job not queued" in e.value.args[1]
    assert [r[0] for r in q(conn, "SELECT id FROM strict_t")] == [1]  # the write failed
    # in a transaction the application sees the error and can roll back
    q(conn, "BEGIN")
    q(conn, "INSERT INTO lenient_t VALUES (9, 'z')")
    with pytest.raises(pymysql.err.OperationalError):
        q(conn, "INSERT INTO strict_t VALUES (3, 'c')")
    q(conn, "ROLLBACK")
    # lenient (the seed's semantics): the write commits, the change is not queued
    q(conn, "INSERT INTO lenient_t VALUES (1, 'a')")
    assert [r[0] for r in q(conn, "SELECT id FROM lenient_t")] == [1]
    one(conn, "SELECT gman_servers_set(%s)", (gm.address,))
    assert wait_for(lambda: _try_insert(conn, "strict_t", 4))
    assert gm.queued("strictfn") == 2


def _try_insert(conn: Any, table: str, id_: int) -> bool:
    try:
        q(conn, f"INSERT INTO {table} VALUES ({id_}, 'x')")
        return True
    except pymysql.err.OperationalError:
        return False


# ------------------------------------------------------------------ failover, breaker

def test_failover_writes_keep_flowing(conn: Any, gm: Gearmand, gm2: Gearmand) -> None:
    make_table(conn, "fo_t", STRICT_TRIGGER, "fofn")
    one(conn, "SELECT gman_servers_set(%s)", (f"{gm.address},{gm2.address}",))
    for i in range(50):
        q(conn, "INSERT INTO fo_t VALUES (%s, 'a')", (i,))
    assert gm.queued("fofn") == 50 and gm2.queued("fofn") == 0
    gm.stop()
    for i in range(50, 250):  # strict trigger: any lost job would fail the INSERT
        q(conn, "INSERT INTO fo_t VALUES (%s, 'b')", (i,))
    assert gm2.queued("fofn") == 200
    gm.start()  # the primary comes back: new jobs return to it (after the breaker probe)
    assert wait_for(lambda: _try_insert(conn, "fo_t", 10_000 + int(time.monotonic() * 1000))
                    and gm.queued("fofn") >= 1, 10)


def test_breaker_hung_gearmand_costs_microseconds(conn: Any, gm: Gearmand) -> None:
    make_table(conn, "cb_t", LENIENT_TRIGGER, "cbfn")
    one(conn, "SELECT gman_servers_set(%s)", (gm.address,))
    one(conn, "SELECT gearsync_timeout_set(250)")
    q(conn, "INSERT INTO cb_t VALUES (0, 'warm')")
    gm.pause()
    try:
        t = time.monotonic()
        q(conn, "INSERT INTO cb_t VALUES (1, 'first')")  # pays the timeout, opens the breaker
        first = time.monotonic() - t
        times = []
        for i in range(2, 402):
            t = time.perf_counter()
            q(conn, "INSERT INTO cb_t VALUES (%s, 'x')", (i,))
            times.append(time.perf_counter() - t)
    finally:
        gm.resume()
    total = sum(times)
    print(f"breaker: first {first * 1000:.0f} ms, then {len(times)} inserts in {total:.2f} s, "
          f"median {statistics.median(times) * 1e6:.0f} us")
    assert first >= 0.2
    # without the breaker: 400 x 250 ms = 100 s; with it a probe costs 250 ms every
    # 0.1 .. 2 s.  The bound leaves room for a loaded 2-core machine.
    assert total < 10, total
    assert statistics.median(times) < 0.005
    assert one(conn, "SELECT COUNT(*) FROM cb_t") == 402  # every write committed


# ------------------------------------------------------------------ how a trigger calls a UDF

#: _init calls for one 4-row INSERT whose AFTER INSERT trigger calls a UDF once per row: both
#: servers set up the trigger's statements (and their UDFs) again for each row. The library
#: keeps its Gearman connection per server thread for that reason (DESIGN.md).
TRIGGER_INITS_PER_ROW = {"mariadb": 1, "mysql": 1}  # measured: MariaDB 10.11, MySQL 9.7.4


def _probe(conn: Any, plugin_dir: Path) -> None:
    """tests/udf_probe/init_probe.c built into the plugin dir and registered (once)."""
    so = plugin_dir / "gs_init_probe.so"
    if not so.exists():
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(so),
                        str(REPO_ROOT / "tests" / "udf_probe" / "init_probe.c")], check=True)
    for fn in ("gs_probe", "gs_probe_inits", "gs_probe_calls", "gs_probe_deinits"):
        if not q(conn, "SELECT 1 FROM mysql.func WHERE name = %s", (fn,)):
            q(conn, f"CREATE FUNCTION {fn} RETURNS INTEGER SONAME 'gs_init_probe.so'")


def _counts(conn: Any) -> tuple[int, int, int]:
    (row,) = q(conn, "SELECT gs_probe_inits(), gs_probe_calls(), gs_probe_deinits()")
    return int(row[0]), int(row[1]), int(row[2])


def test_a_trigger_runs_a_udfs_init_for_every_row(conn: Any, plugin_dir: Path) -> None:
    _probe(conn, plugin_dir)
    q(conn, "DROP TABLE IF EXISTS probe_t")
    q(conn, "CREATE TABLE probe_t (id INT PRIMARY KEY) ENGINE=InnoDB")
    q(conn, "CREATE TRIGGER probe_t_ai AFTER INSERT ON probe_t FOR EACH ROW DO gs_probe(NEW.id)")
    before = _counts(conn)
    q(conn, "INSERT INTO probe_t VALUES (1), (2), (3), (4)")
    inits, calls, deinits = (a - b for a, b in zip(_counts(conn), before))
    assert calls == 4 and deinits == inits
    assert inits == 4 * TRIGGER_INITS_PER_ROW[SERVER], (SERVER, inits)
    # a plain SELECT over the same 4 rows sets the function up once
    before = _counts(conn)
    assert q(conn, "SELECT SUM(gs_probe(id)) FROM probe_t") == [(0,)]
    assert tuple(a - b for a, b in zip(_counts(conn), before)) == (1, 4, 1)


def test_udf_arguments_arrive_in_the_columns_character_set(conn: Any) -> None:
    """Neither server converts a string argument to a UDF (MySQL >= 8.0.19 converts only for a
    UDF that asks through its mysql_udf_metadata service, which the library does not): a latin1
    'é' arrives as the byte E9, not UTF-8, so JSON gets U+FFFD; CONVERT(… USING utf8mb4) fixes it."""
    q(conn, "DROP TABLE IF EXISTS cs_t")
    q(conn, "CREATE TABLE cs_t (id INT PRIMARY KEY, l1 VARCHAR(10) CHARACTER SET latin1, "
            "u8 VARCHAR(10) CHARACTER SET utf8mb4, g VARCHAR(10) CHARACTER SET gbk)")
    q(conn, "INSERT INTO cs_t VALUES (1, 'é', 'é', '中')")
    assert one(conn, "SELECT udf_json_object(l1, u8, g) FROM cs_t") == '{"l1":"\\ufffd","u8":"é","g":"\\ufffd\\ufffd"}'
    assert json.loads(one(conn, "SELECT udf_json_array(CONVERT(l1 USING utf8mb4), CONVERT(g USING utf8mb4)) "
                                "FROM cs_t")) == ["é", "中"]


# ------------------------------------------------------------------ config file + restart

def test_server_list_survives_restart(db: SqlServer, plugin_dir: Path, gm: Gearmand) -> None:
    cnf = plugin_dir / "gearsync_udf.cnf"
    cnf.write_text(f"# written by test_server_list_survives_restart\nservers = {gm.address}\n"
                   "timeout_ms = 300\n")
    try:
        c = db.connect(database="udft")
        make_table(c, "rs_t", STRICT_TRIGGER, "rsfn")
        c.close()
        db.restart()
        c = db.connect(database="udft")
        # no gman_servers_set after the restart: the config file's list is used
        q(c, "INSERT INTO rs_t VALUES (1, 'after restart')")
        assert gm.queued("rsfn") == 1
        assert one(c, "SELECT gearsync_timeout_set(NULL)") is None
        c.close()
    finally:
        cnf.unlink()
    assert db.running


# ------------------------------------------------------------------ trust boundaries

SETTER_CALLS = ["SELECT gman_servers_set('127.0.0.1:1')", "SELECT gman_servers_set(%s)",
                "SELECT gman_servers_set('127.0.0.1:1', 'fn')", "SELECT gearsync_timeout_set(3600000)",
                "SELECT gearsync_timeout_set(%s)", "SELECT gearsync_do_timeout_set(3600000)",
                "SELECT gearsync_timeout_set(NULL)"]


def origin_lines(db: SqlServer) -> List[str]:
    return [ln for ln in db.log_path.read_text(errors="replace").splitlines()
            if "gearsync_udf " in ln and ": config " in ln]


@pytest.fixture
def nobody(db: SqlServer) -> Iterator[Any]:
    """A login created with no privileges at all (CREATE USER, no GRANT)."""
    db.execute("DROP USER IF EXISTS 'nobody'@'127.0.0.1'")
    db.execute("CREATE USER 'nobody'@'127.0.0.1'")
    c = pymysql.connect(host=db.host, port=db.port, user="nobody", password="", autocommit=True)
    assert q(c, "SHOW GRANTS") == [("GRANT USAGE ON *.* TO `nobody`@`127.0.0.1`",)]
    yield c
    c.close()
    db.execute("DROP USER 'nobody'@'127.0.0.1'")


@pytest.fixture
def locked(db: SqlServer, plugin_dir: Path, gm: Gearmand) -> Iterator[Gearmand]:
    """mariadbd restarted with gearsync_udf.cnf: servers = gm, lock = on, timeout_ms = 300;
    afterwards restarted again without it."""
    cnf = plugin_dir / "gearsync_udf.cnf"
    cnf.write_text(f"servers = {gm.address}\nlock = on\ntimeout_ms = 300\n")
    db.restart()
    try:
        yield gm
    finally:
        cnf.unlink()
        db.restart()


def test_locked_setters_refused_for_every_login_and_install_sql_works(
        locked: Gearmand, db: SqlServer, nobody: Any) -> None:
    gm = locked
    root = db.connect(database="udft")
    for c in (nobody, root):
        for sql in SETTER_CALLS:
            with pytest.raises(pymysql.err.OperationalError) as e:
                q(c, sql, ("127.0.0.1:2",) if "%s" in sql else None)
            name = sql.split()[1].split("(")[0]
            assert e.value.args[0] == 1123  # ER_CANT_INITIALIZE_UDF
            assert e.value.args[1] == (f"Can't initialize function '{name}'; "
                                       f"{name}: locked by gearsync_udf.cnf (lock = on)"), sql
    db.source(REPO_ROOT / "sql" / "install.sql")  # registers and reports; sets nothing
    # the cnf's list is in force: a trigger (as root) and gman_do_background (as nobody) use it
    make_table(root, "lk_t", STRICT_TRIGGER, "lkfn")
    q(root, "INSERT INTO lk_t VALUES (1, 'x')")
    assert one(nobody, "SELECT gman_do_background('lkfn', 'y')").startswith("H:")
    assert gm.queued("lkfn") == 2
    line = origin_lines(db)[-1]  # this start's line
    assert f"config {db.plugin_dir / 'gearsync_udf.cnf'} (read)" in line
    assert f"servers {gm.address} from the file" in line and "lock on" in line
    root.close()


def test_locked_root_writers_stay_bounded_with_gearmand_hung(locked: Gearmand, db: SqlServer,
                                                             nobody: Any) -> None:
    """The attack of issue 12: a login without privileges raises the timeout, gearmand hangs,
    root's writers block.  Under lock = on the raise is refused and every write returns
    within the cnf's 300 ms (gearsync_send never waits for gearmand; gman_do_background
    waits once, then the breaker opens)."""
    gm = locked
    with pytest.raises(pymysql.err.OperationalError):
        q(nobody, "SELECT gearsync_timeout_set(3600000)")
    root = db.connect(database="udft")
    make_table(root, "hb_send", "CREATE TRIGGER {table}_ai AFTER INSERT ON {table} FOR EACH ROW "
               "DO gearsync_send('{function}', udf_json_object(NEW.id AS id))", "hbfn")
    make_table(root, "hb_bg", LENIENT_TRIGGER, "hbfn")
    q(root, "INSERT INTO hb_bg VALUES (0, 'warm')")
    gm.pause()
    try:
        times = []
        for table, n in (("hb_send", 1200), ("hb_bg", 200)):
            for i in range(1, n + 1):
                t = time.perf_counter()
                q(root, f"INSERT INTO {table} VALUES (%s, 'x')", (i,))
                times.append(time.perf_counter() - t)
    finally:
        gm.resume()
    print(f"hung gearmand, locked 300 ms: {len(times)} writes in {sum(times):.2f} s, "
          f"slowest {max(times) * 1e3:.0f} ms")
    assert max(times) < 0.3 + 0.5  # the timeout plus scheduling slack on a busy machine
    assert sum(times) < 10
    assert one(root, "SELECT COUNT(*) FROM hb_send") == 1200
    root.close()


def test_clamped_timeout_bounds_a_writer_with_gearmand_hung(db: SqlServer, nobody: Any,
                                                           gm: Gearmand) -> None:
    """Lock off: a login without privileges may set the timeout, but not above 10 s."""
    root = db.connect(database="udft")
    try:
        assert one(nobody, "SELECT gman_servers_set(%s)", (gm.address,)) == gm.address
        assert one(nobody, "SELECT gearsync_timeout_set(3600000)") == 10_000
        assert one(nobody, "SELECT gearsync_do_timeout_set(3600000)") == 60_000
        make_table(root, "cl_t", LENIENT_TRIGGER, "clfn")
        q(root, "INSERT INTO cl_t VALUES (0, 'warm')")
        gm.pause()
        try:
            t = time.monotonic()
            q(root, "INSERT INTO cl_t VALUES (1, 'hung')")
            took = time.monotonic() - t
        finally:
            gm.resume()
        print(f"hung gearmand, timeout asked 3600000 ms: the write returned after {took:.1f} s")
        assert 9.5 <= took < 13
    finally:
        one(root, "SELECT gearsync_timeout_set(250)")
        one(root, "SELECT gearsync_do_timeout_set(5000)")
        root.close()


def test_restart_without_cnf_says_where_the_list_came_from(db: SqlServer, plugin_dir: Path) -> None:
    assert not (plugin_dir / "gearsync_udf.cnf").exists()
    db.restart()
    c = db.connect()
    one(c, "SELECT gearsync_timeout_set(NULL)")  # the first gearsync call reads the config
    c.close()
    line = origin_lines(db)[-1]
    assert f"config {plugin_dir / 'gearsync_udf.cnf'} (none)" in line
    assert "servers 127.0.0.1:4730 from the built-in default" in line and "lock off" in line


# ------------------------------------------------------------------ unload

def sender_threads(pid: int) -> int:
    """mariadbd's threads named gearsync_send (the library's sender)."""
    n = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            n += (task / "comm").read_text().strip() == "gearsync_send"
        except OSError:  # the thread exited meanwhile
            pass
    return n


def test_drop_every_function_then_create_again_leaks_no_thread_or_memory(db: SqlServer,
                                                                          gm: Gearmand) -> None:
    """uninstall.sql (DROP FUNCTION of every function: mysqld dlcloses the library, whose
    destructor delivers the queue and joins the sender thread), then install.sql again, ten
    times, with 2 MB of records each time (the queue's pages are touched): one sender thread
    at most, none after each unload, every record delivered, the server's RSS flat."""
    from gearsync.envelope import decode
    from gearman_peers import grab_all

    pid = db.pid  # the server's own (for MySQL not the podman process that runs its container)
    assert pid is not None
    log_start = db.log_path.stat().st_size
    # uninstall.sql refuses while a trigger still calls a gearsync function: drop the ones
    # the tests above left in udft
    for (name,) in db.execute("SELECT trigger_name FROM information_schema.triggers "
                              "WHERE trigger_schema = 'udft'"):
        db.execute(f"DROP TRIGGER udft.`{name}`")
    rss = []
    for cycle in range(10):
        db.source(REPO_ROOT / "sql" / "install.sql")
        c = db.connect(database="udft")
        one(c, "SELECT gman_servers_set(%s)", (gm.address,))
        q(c, "DROP TABLE IF EXISTS un_t")
        q(c, "CREATE TABLE un_t (id INT PRIMARY KEY, name TEXT)")
        q(c, "CREATE TRIGGER un_t_ai AFTER INSERT ON un_t FOR EACH ROW "
             "DO gearsync_send('unfn', CONCAT(NEW.id, ':', NEW.name))")
        q(c, f"INSERT INTO un_t SELECT seq, REPEAT('x', 1000) FROM {numbers(2000)}")
        assert sender_threads(pid) == 1
        q(c, "DROP TABLE un_t")  # no trigger may keep the library in use
        c.close()
        db.source(REPO_ROOT / "sql" / "uninstall.sql")  # unloads: delivers, joins the thread
        assert sender_threads(pid) == 0, f"cycle {cycle}: sender thread left after unload"
        jobs = grab_all(gm, b"unfn")
        recs = [p for _, w in jobs for _, p in decode(b"unfn", w, None)]
        assert sorted(int(p.split(b":")[0]) for p in recs) == list(range(1, 2001)), cycle
        rss.append(rss_kb(pid))
    db.source(REPO_ROOT / "sql" / "install.sql")
    print(f"unload cycles: {SERVER} VmRSS after each (kB): {rss}")
    with open(db.log_path, "rb") as f:
        f.seek(log_start)
        assert b"library unloaded with" not in f.read()  # nothing was left behind
    if not ASAN:
        assert max(rss[2:]) - rss[2] < 8 * 1024, rss  # a leaked queue would add ~2 MiB a cycle


# ------------------------------------------------------------------ concurrency

def test_concurrency_no_crash_no_deadlock_flat_rss(db: SqlServer, gm: Gearmand, gm2: Gearmand) -> None:
    """16 connections of trigger-firing writes while another changes the server list."""
    setup = db.connect(database="udft")
    q(setup, "DROP TABLE IF EXISTS cc_t")
    q(setup, "CREATE TABLE cc_t (id INT PRIMARY KEY, name TEXT) ENGINE=InnoDB")
    if CONTROL:  # the same triggers without UDF calls: mariadbd's own RSS curve
        q(setup, """CREATE TRIGGER cc_t_ai AFTER INSERT ON cc_t FOR EACH ROW
                    BEGIN
                      IF CONCAT(NEW.id, NEW.name, LENGTH(NEW.name)) IS NULL THEN
                        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'never';
                      END IF;
                    END""")
        q(setup, "CREATE TRIGGER cc_t_ad AFTER DELETE ON cc_t FOR EACH ROW DO CONCAT(OLD.id)")
    else:
        q(setup, """CREATE TRIGGER cc_t_ai AFTER INSERT ON cc_t FOR EACH ROW
                BEGIN
                  IF gman_do_background('ccfn', udf_json_object(NEW.id AS id, NEW.name AS name,
                       udf_json_array(NEW.id, LENGTH(NEW.name)) AS json_meta)) IS NULL THEN
                    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'gearsync: job not queued';
                  END IF;
                END""")
        # gearsync_send_change as a generated direct trigger calls it, over the hostile names
        q(setup, """CREATE TRIGGER cc_t_ad AFTER DELETE ON cc_t FOR EACH ROW
                BEGIN
                  DO gman_do_low_background('ccdel', udf_json_values(OLD.id));
                  DO gearsync_send_change('ccchg', 'udft.cc_t', 'delete', CONCAT('cc:', OLD.name, ':', OLD.id),
                                          CONCAT(OLD.name, 'x'), JSON_ARRAY(OLD.id, OLD.name));
                END""")
    one(setup, "SELECT gman_servers_set(%s)", (f"{gm.address},{gm2.address}",))
    pid = db.pid
    assert pid is not None
    conns, batch = 16, 50
    names = ["x", "ünïcødé \t\x01", "y" * 2000, '"quoted"\\', ""]
    rss: List[int] = []
    errors: List[BaseException] = []

    def writer(k: int, rnd: int) -> None:
        """Insert this connection's rows in batches, then delete them all: every round
        reuses the same ids, so table data does not grow and RSS shows the UDFs' memory."""
        try:
            c = db.connect(database="udft")
            base = k * STRESS_ROWS
            for start in range(0, STRESS_ROWS, batch):
                rows = [(base + start + i, names[(rnd + start + i) % len(names)])
                        for i in range(min(batch, STRESS_ROWS - start))]
                with c.cursor() as cur:
                    cur.executemany("INSERT INTO cc_t VALUES (%s, %s)", rows)
            with c.cursor() as cur:
                cur.execute("DELETE FROM cc_t WHERE id >= %s AND id < %s",
                            (base, base + STRESS_ROWS))
            c.close()
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    def changer(stop: threading.Event) -> None:
        c = db.connect()
        lists = [f"{gm.address},{gm2.address}", f"{gm.address}", f"{gm.address},{gm2.address},"
                 f"127.0.0.1:{free_port()}"]
        n = 0
        while not stop.is_set():
            one(c, "SELECT gman_servers_set(%s)", (lists[n % 3],))
            one(c, "SELECT gman_servers_set(%s, 'unused_fn')", (lists[(n + 1) % 3],))
            one(c, "SELECT gearsync_timeout_set(%s)", (250 + n % 3,))
            n += 1
            time.sleep(0.005)
        c.close()

    rss0 = rss_kb(pid)
    t0 = time.monotonic()
    for rnd in range(STRESS_ROUNDS):
        stop = threading.Event()
        ch = threading.Thread(target=changer, args=(stop,))
        ch.start()
        ws = [threading.Thread(target=writer, args=(k, rnd)) for k in range(conns)]
        for w in ws:
            w.start()
        for w in ws:
            w.join(timeout=600)
            assert not w.is_alive(), "writer stuck: deadlock?"
        stop.set()
        ch.join(timeout=60)
        assert not errors, errors[:3]
        assert db.running, "mariadbd died"
        rss.append(rss_kb(pid))
    elapsed = time.monotonic() - t0
    rows = conns * STRESS_ROWS * STRESS_ROUNDS
    jobs = gm.queued("ccfn") + gm2.queued("ccfn")
    deletes = gm.queued("ccdel") + gm2.queued("ccdel")
    print(f"concurrency: {conns} connections x {STRESS_ROWS} rows x {STRESS_ROUNDS} rounds = "
          f"{rows} trigger inserts + {rows} trigger deletes in {elapsed:.1f} s; "
          f"mariadbd VmRSS before {rss0} kB, after each round (kB): {rss}")
    if not CONTROL:
        assert jobs == rows  # strict trigger: every insert queued exactly one job
        assert deletes == rows  # the list always starts with a live server
        assert wait_for(lambda: one(setup, "SELECT gearsync_send_flush()") == 0, 60)
        from gearsync.envelope import decode
        from gearman_peers import grab_all
        changes = [json.loads(p) for g in (gm, gm2) for _, w in grab_all(g, b"ccchg", limit=1_000_000)
                   for _, p in decode(b"ccchg", w, None)]
        assert len(changes) >= rows  # at least once (a batch is re-sent after a lost connection)
        assert {(c["s"], c["o"], c["pk"][1] in names, c["ok"] == (c["pk"][1] + "x").encode().hex().upper())
                for c in changes} == {("udft.cc_t", "delete", True, True)}
    assert one(setup, "SELECT COUNT(*) FROM cc_t") == 0
    # mariadbd itself grows for a while under this load (per-thread malloc arenas,
    # InnoDB undo/purge): the control run without UDF calls grew 23 MiB over 8 rounds
    # of 1000 rows here, the UDF run 28 MiB, then both level off.  The bound catches a
    # leak of >= ~0.5 KiB per trigger call; tests/udf/test_leaks.py bounds the library
    # itself to the kilobyte in-process.
    if not ASAN:  # ASan's quarantine and shadow memory make RSS meaningless
        assert max(rss[1:]) - rss[0] < RSS_BOUND_MIB * 1024, rss
    setup.close()
