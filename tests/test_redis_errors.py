"""Redis errors that are not connection errors: the ones that pass (OOM, READONLY after a
failover, LOADING…) are retried until they do, losing nothing; the ones that never will (a
WRONGTYPE) go to the dead-letter stream, counted and shown by `gearsync status` — never a silent
WORK_FAIL of a valid change."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from redis.exceptions import ResponseError

from gearsync.redis_sink import retryable
from gearsync.testing.processes import WorkerProcess, wait_for

from helpers import converge, execute, redis_state


@pytest.mark.parametrize("text, again", [
    ("OOM command not allowed when used memory > 'maxmemory'.", True),
    ("READONLY You can't write against a read only replica.", True),
    ("LOADING Redis is loading the dataset in memory", True),
    ("Error running script (call to f_x): @user_script:40: -OOM command not allowed", True),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
    ("Error running script (call to f_x): @user_script:31: WRONGTYPE Operation against a key", False),
    ("ERR value is not an integer or out of range", False),
])
def test_classification(text: str, again: bool) -> None:
    assert retryable(ResponseError(text)) is again


def _for_a_while(r: Any, set_up: str, undo: str, seconds: float = 5.0) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        r.execute_command(*undo.split())
    r.execute_command(*set_up.split())
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("fault", ["oom", "readonly"])
def test_a_redis_that_refuses_for_5_s_loses_nothing(stack: Any, safe_worker: WorkerProcess, safe_mysql: Any,
                                                   redis_client: Any, fault: str) -> None:
    """Both modes write while Redis answers OOM (maxmemory 1) or READONLY (a replica of nobody)
    for 5 s: every change arrives once it accepts writes again."""
    r = redis_client
    undo = _for_a_while(r, *{"oom": ("CONFIG SET maxmemory 1", "CONFIG SET maxmemory 0"),
                             "readonly": (f"REPLICAOF 127.0.0.1 {stack.redis.port + 1}", "REPLICAOF NO ONE")}[fault])
    try:
        for i in range(50):
            execute(safe_mysql, "INSERT INTO test.test_safe VALUES (%s, %s)", (i, f"s{i}"))
            execute(safe_mysql, "INSERT INTO test.test VALUES (%s, %s)", (i, f"d{i}"))
            time.sleep(0.02)
    finally:
        undo.join()
    converge(safe_mysql, r, timeout=30)
    assert len(redis_state(r)) == 50
    wait_for(lambda: r.mget([str(i) for i in range(50)]) == [f"d{i}".encode() for i in range(50)], 30, 0.1,
             "the direct-mode changes")
    log = safe_worker.output()
    assert "retry" in log and "refused by redis for good" not in log


def test_a_change_redis_never_accepts_goes_to_the_dead_letters(stack: Any, safe_worker: WorkerProcess,
                                                              safe_mysql: Any, redis_client: Any) -> None:
    r = redis_client
    execute(safe_mysql, "INSERT INTO test.test_safe VALUES (1, 'a'), (2, 'b')")
    converge(safe_mysql, r)
    r.delete("gearsync:v:test_safe:1")
    r.hset("gearsync:v:test_safe:1", "not", "a string")   # the script's GET of it: WRONGTYPE
    execute(safe_mysql, "UPDATE test.test_safe SET name = CONCAT(name, '2')")
    wait_for(lambda: r.get("test_safe:2") == b"b2", 10, 0.05, "the other change of the batch")
    wait_for(lambda: r.xlen("gearsync:dead") == 1, 10, 0.05, "the dead letter")
    ((_id, entry),) = r.xrange("gearsync:dead")
    assert entry[b"from"] == b"test_safe:1" and b"WRONGTYPE" in entry[b"error"] and entry[b"payload"] == b"a2"
    wait_for(lambda: execute(safe_mysql, "SELECT COUNT(*) FROM gearsync.outbox")[0][0] == 0, 10, 0.05,
             "the outbox rows deleted (the dead letter is the record of the refused one)")
    st = subprocess.run([sys.executable, "-m", "gearsync", "status"], capture_output=True, text=True,
                        env=stack.env())
    assert st.returncode == 1 and "dead letters: 1" in st.stdout, st.stdout
    r.delete("gearsync:dead")
    st = subprocess.run([sys.executable, "-m", "gearsync", "status"], capture_output=True, text=True,
                        env=stack.env())
    assert st.returncode == 0, st.stdout
    assert "refused by redis for good" in safe_worker.output()
