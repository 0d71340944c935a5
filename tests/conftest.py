"""Fixtures: a real database server, gearmand and Redis on free loopback ports.

The server is MariaDB (UDFs from build/), or Oracle MySQL in a Podman container (UDFs from
build/mysql, built in its image) when ``GEARSYNC_TEST_SERVER=mysql`` (``make test-mysql``). A
MySQL run deselects the tests that use no database server (the C harness, codecs, the Gearman
protocol…): they ran in ``make test`` and would prove nothing new."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import settings as hypothesis_settings

# CI runs a fixed set of examples (a red CI must be reproducible); locally each run explores
# new ones. `make fuzz` runs the long, random campaign.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

from gearsync.testing.processes import WorkerProcess
from gearsync.testing.redis_cluster import RedisCluster
from gearsync.testing.stack import Gearmand, RedisServer, Stack

from helpers import REPO_ROOT, SERVER

SO_PATH = REPO_ROOT / "build" / "gearsync_udf.so"
#: Fixtures through which a test reaches a database server (directly or by starting one).
SERVER_FIXTURES = {"stack", "udf_so"}


def pytest_report_header(config: pytest.Config) -> str:
    return f"database server: {SERVER} (GEARSYNC_TEST_SERVER)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SERVER == "mariadb":
        return
    keep = [it for it in items if SERVER_FIXTURES & set(getattr(it, "fixturenames", ()))]
    dropped = [it for it in items if it not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def udf_so() -> Path:
    """The UDF library the server loads, (re)built by make so tests always load the current
    sources: build/gearsync_udf.so for MariaDB, build/mysql/gearsync_udf.so (built in the MySQL
    image against its headers) for MySQL."""
    if SERVER == "mysql":
        subprocess.run(["make", "-s", "-C", str(REPO_ROOT), "udf-mysql"], check=True)
        return REPO_ROOT / "build" / "mysql" / "gearsync_udf.so"
    subprocess.run(["make", "-s", "-C", str(REPO_ROOT), "udf"], check=True)
    return SO_PATH


@pytest.fixture(scope="session")
def stack(udf_so: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One database server + gearmand + Redis for the session, with sql/install.sql applied."""
    st = Stack(base_dir=tmp_path_factory.mktemp("stack"), plugin_dir=udf_so.parent, server=SERVER)
    with st:
        st.install_sql()
        yield st


@pytest.fixture
def mysql(stack: Stack) -> Iterator[Any]:
    """An autocommit PyMySQL connection; test.test emptied before the test (its delete records
    acknowledged by gearmand)."""
    assert stack.mysql is not None
    conn = stack.mysql.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT gman_servers_set(%s)", (stack.gearman_servers,))
        cur.execute("DELETE FROM test.test")
        # the deletes' records leave through the sender thread: wait until gearmand holds them,
        # so the worker fixture's drain sees them queued instead of after its FLUSHALL (seen in CI)
        cur.execute("SELECT gearsync_send_flush()")
    yield conn
    conn.close()


@pytest.fixture
def redis_client(stack: Stack) -> Any:
    r = stack.redis.client()
    r.flushall()
    return r


@pytest.fixture
def worker(stack: Stack, tmp_path: Path, mysql: Any, redis_client: Any) -> Iterator[WorkerProcess]:
    """A `gearsync worker` child process serving syncToRedis from the stack, into its Redis.

    It starts after test.test was emptied and Redis flushed, and is stopped afterwards."""
    _drain(stack, redis_client)
    w = WorkerProcess(stack.env(), log_path=tmp_path / "worker.log", gearmand=stack.gearmand)
    w.start()
    yield w
    w.stop()


def _drain(stack: Stack, redis_client: Any) -> None:
    """Wait until no syncToRedis job is queued (from earlier tests), then flush Redis."""
    status = stack.gearmand.status().get("syncToRedis", (0, 0, 0))
    if status[0]:
        w = WorkerProcess(stack.env(), gearmand=stack.gearmand).start()
        try:
            from gearsync.testing.processes import wait_for

            wait_for(lambda: stack.gearmand.status().get("syncToRedis", (0, 0, 0))[0] == 0, 30, 0.05)
        finally:
            w.stop()
    redis_client.flushall()


@pytest.fixture
def gearmand_factory(tmp_path: Path) -> Iterator[Callable[..., Gearmand]]:
    """Start gearmands of the test's own (``factory(**Gearmand options)``); all stopped after."""
    started: list[Gearmand] = []

    def start(**kw: Any) -> Gearmand:
        g = Gearmand(tmp_path / f"gearmand-{len(started)}", **kw).start()
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def gearmand(gearmand_factory: Callable[..., Gearmand]) -> Gearmand:
    """A gearmand of the test's own (for faults that must not disturb the session stack)."""
    return gearmand_factory()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path / "redis")
    with r:
        yield r


# -- safe mode (outbox) ------------------------------------------------------------------------
@pytest.fixture
def safe_mysql(mysql: Any) -> Any:
    """``mysql``, with test.test_safe emptied (TRUNCATE: no triggers) and the outbox emptied."""
    with mysql.cursor() as cur:
        cur.execute("TRUNCATE TABLE test.test_safe")
        cur.execute("DELETE FROM gearsync.outbox")
    return mysql


@pytest.fixture
def safe_env(stack: Stack) -> dict[str, str]:
    """Environment for a safe-mode worker on the session stack. The sweeper only takes rows
    older than 60 s, so everything a test sees applied was confirmed through its job."""
    env = stack.env()
    env.update(GEARSYNC_SWEEP_INTERVAL="0.2", GEARSYNC_SWEEP_AGE="60", GEARSYNC_LOG_LEVEL="INFO")
    return env


@pytest.fixture
def safe_worker(stack: Stack, tmp_path: Path, safe_mysql: Any, redis_client: Any,
                safe_env: dict[str, str]) -> Iterator[WorkerProcess]:
    """One `gearsync worker` with safe mode on (function ``gearsync``), started after the
    tables were emptied and Redis flushed; stopped afterwards."""
    w = WorkerProcess(safe_env, log_path=tmp_path / "safe-worker.log", gearmand=stack.gearmand,
                      function="gearsync")
    w.start()
    yield w
    w.stop()


@pytest.fixture
def seed_drained(stack: Stack, redis_client: Any) -> None:
    """No syncToRedis job of an earlier test is left queued (a worker of this test pointed at
    another Redis would take it)."""
    _drain(stack, redis_client)


# -- Redis Cluster ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster of 3 primaries with a replica each, for the session (tests that kill or
    reshard nodes start their own)."""
    with RedisCluster(tmp_path_factory.mktemp("cluster"), primaries=3, replicas=1) as c:
        yield c


@pytest.fixture
def cluster(redis_cluster: RedisCluster) -> RedisCluster:
    """The session's cluster, emptied (FLUSHALL on every primary) and ok."""
    redis_cluster.wait_ok()
    for n in redis_cluster.primaries():
        n.client().flushall()
    return redis_cluster
