"""Trust boundaries on the Python side: gearsync's own keys cannot be written by a job or a
row, a corrupt version affects only its key and verify --repair heals it, and no config text
reaches SQL except quoted (the injection corpus, through `gearsync triggers | mariadb`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gearsync import install as inst
from gearsync import verify as vf
from gearsync.config import ConfigError, parse
from gearsync.envelope import decode as decode_envelope
from gearsync.gearman import GearmanClient
from gearsync.payload import direct_change
from gearsync.testing.processes import WorkerProcess, wait_for

from gearman_peers import grab_all
from helpers import converge, execute, redis_state

DB = "gs_trust"


def test_a_forged_direct_job_cannot_touch_safe_mode_versions(stack: Any, safe_worker: WorkerProcess,
                                                            safe_mysql: Any, redis_client: Any,
                                                            tmp_path: Path) -> None:
    """`gearman -f syncToRedis` (or gearsync_send from any login) aimed at gearsync:v:…: refused
    and counted; every committed safe-mode change still arrives."""
    # the safe-mode worker serves syncToRedis too, as every default worker does
    execute(safe_mysql, "INSERT INTO test.test_safe VALUES (1, 'one')")
    converge(safe_mysql, redis_client)
    with GearmanClient(stack.gearmand.host, stack.gearmand.port) as c:
        c.submit_many("syncToRedis", [json.dumps({"id": "gearsync:v:test_safe:1", "name": "99999999999999999"}).encode(),
                                      json.dumps({"id": "gearsync:backfill:x", "op": "delete"}).encode(),
                                      json.dumps({"id": "fine", "name": "ok"}).encode()])
    wait_for(lambda: redis_client.get(b"fine") == b"ok", 10, 0.05)
    assert int(redis_client.get(b"gearsync:v:test_safe:1")) < 2 ** 53  # untouched
    execute(safe_mysql, "UPDATE test.test_safe SET name = 'two' WHERE id = 1")
    converge(safe_mysql, redis_client)
    assert redis_state(redis_client) == {b"test_safe:1": b"two"}
    log = safe_worker.output()
    assert log.count("refused: ") == 2 and "is under gearsync:" in log


def test_a_corrupt_version_affects_only_its_key_and_repair_heals_it(stack: Any, mysql: Any, redis_client: Any,
                                                                   tmp_path: Path, safe_env: dict[str, str]) -> None:
    execute(mysql, f"DROP DATABASE IF EXISTS {DB}")
    execute(mysql, f"CREATE DATABASE {DB}")
    execute(mysql, f"CREATE TABLE {DB}.t (id INT PRIMARY KEY, v VARCHAR(10))")
    execute(mysql, "DELETE FROM gearsync.outbox")
    cfg_text = (f'[mysql]\nurl = "{stack.mysql_url}"\n[redis]\nurl = "{stack.redis_url}"\n'
                f'[tables."{DB}.t"]\nkey = "t:{{id}}"\nvalue = "column"\ncolumn = "v"\n')
    cfg_file = tmp_path / "g.toml"
    cfg_file.write_text(cfg_text)
    cfg = parse({"mysql": {"url": stack.mysql_url}, "redis": {"url": stack.redis_url},
                 "tables": {f"{DB}.t": {"key": "t:{id}", "value": "column", "column": "v"}}})
    inst.install(cfg, mysql)
    w = WorkerProcess(safe_env, ["--config", str(cfg_file)], log_path=tmp_path / "w.log", gearmand=stack.gearmand,
                      function="gearsync").start()
    try:
        execute(mysql, f"INSERT INTO {DB}.t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        wait_for(lambda: redis_client.mget("t:1", "t:2", "t:3") == [b"a", b"b", b"c"], 10, 0.05)
        redis_client.set("gearsync:v:t:1", "not a number")     # by hand, or by a forged job before 0.2
        redis_client.set("gearsync:v:t:2", str(2 ** 52))       # a version from the far future
        execute(mysql, f"UPDATE {DB}.t SET v = CONCAT(v, '2')")  # one batch of three
        wait_for(lambda: redis_client.get("t:3") == b"c2", 10, 0.05, "the innocent key of the batch")
        wait_for(lambda: "is not a number" in w.output(), 10, 0.05, "the corrupt version reported")
        assert redis_client.mget("t:1", "t:2") == [b"a", b"b"]  # refused, each on its own key
        reports = vf.verify(cfg, progress=False)
        assert (reports[0].corrupt, reports[0].drift) == (2, 2)
        assert vf.verify(cfg, repair=True, progress=False)[0].repaired == 2
        assert redis_client.mget("t:1", "t:2", "t:3") == [b"a2", b"b2", b"c2"]
        assert vf.verify(cfg, progress=False)[0].drift == 0
        execute(mysql, f"UPDATE {DB}.t SET v = 'after' WHERE id IN (1, 2)")  # and later changes arrive again
        wait_for(lambda: redis_client.mget("t:1", "t:2") == [b"after", b"after"], 10, 0.05)
    finally:
        w.stop()
        execute(mysql, f"DROP DATABASE IF EXISTS {DB}")


def test_a_row_cannot_write_under_gearsync(stack: Any, mysql: Any, redis_client: Any) -> None:
    """key = "{name}" and a row whose name is gearsync:v:…: the script refuses it (backfill here)."""
    execute(mysql, f"DROP DATABASE IF EXISTS {DB}")
    execute(mysql, f"CREATE DATABASE {DB}")
    try:
        execute(mysql, f"CREATE TABLE {DB}.k (name VARCHAR(40) PRIMARY KEY, v INT)")
        execute(mysql, f"INSERT INTO {DB}.k VALUES ('gearsync:v:victim', 1), ('fine', 2)")
        redis_client.set("gearsync:v:victim", "7")
        from gearsync import backfill as bf

        cfg = parse({"mysql": {"url": stack.mysql_url}, "redis": {"url": stack.redis_url},
                     "tables": {f"{DB}.k": {"key": "{name}", "value": "column", "column": "v"}}})
        (res,) = bf.backfill(cfg, progress=False)
        assert (res.rows, res.written) == (2, 1)
        assert redis_client.get("gearsync:v:victim") == b"7" and redis_client.get("fine") == b"2"
    finally:
        execute(mysql, f"DROP DATABASE IF EXISTS {DB}")


# -- the injection corpus -----------------------------------------------------------------------
CORPUS = ["*/ DROP TABLE gs_trust.canary; /*", "-- DROP TABLE gs_trust.canary", "`; DROP TABLE gs_trust.canary; `",
          "'); DROP TABLE gs_trust.canary; --", "\"; DROP TABLE gs_trust.canary; --", "\\'",
          "DELIMITER ;; DROP TABLE gs_trust.canary;;", "$$ DROP TABLE gs_trust.canary $$", "# {{id}} braces"]


@pytest.mark.parametrize("mode", ["safe", "direct"])
def test_injection_corpus_through_the_client(stack: Any, mysql: Any, tmp_path: Path, mode: str) -> None:
    execute(mysql, f"DROP DATABASE IF EXISTS {DB}")
    execute(mysql, f"CREATE DATABASE {DB}")
    try:
        execute(mysql, f"CREATE TABLE {DB}.canary (x INT)")
        toml = f'[mysql]\nurl = "{stack.mysql_url}"\n'
        for i, text in enumerate(CORPUS):
            execute(mysql, f"CREATE TABLE {DB}.t{i} (id INT PRIMARY KEY, v INT)")
            toml += f'[tables."{DB}.t{i}"]\nkey = {json.dumps(text + ":{id}")}\nmode = "{mode}"\n'
        cfg_file = tmp_path / "g.toml"
        cfg_file.write_text(toml)
        out = subprocess.run([sys.executable, "-m", "gearsync", "triggers", "--config", str(cfg_file)],
                             capture_output=True, text=True, check=True).stdout
        (tmp_path / "t.sql").write_text(out)
        stack.mysql.source(tmp_path / "t.sql")
        assert execute(mysql, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s "
                              "AND table_name = 'canary'", (DB,)) == [(1,)]
        n = execute(mysql, "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = %s", (DB,))
        assert n == [(3 * len(CORPUS),)]
        for i, text in enumerate(CORPUS):  # and each key is the text, byte for byte
            execute(mysql, "DELETE FROM gearsync.outbox")
            execute(mysql, f"INSERT INTO {DB}.t{i} VALUES (5, 1)")
            if mode == "safe":
                literal = text.replace("{{", "{").replace("}}", "}")
                assert execute(mysql, "SELECT k FROM gearsync.outbox") == [((literal + ":5").encode(),)]
        if mode == "direct":  # what the triggers sent is for this test only: one record per row, its key exact
            execute(mysql, "SELECT gearsync_send_flush()")
            keys = [direct_change(p).key for _u, w in grab_all(stack.gearmand, b"gearsync_direct")
                    for _v, p in decode_envelope(b"gearsync_direct", w, None)]
            assert keys == [(t.replace("{{", "{").replace("}}", "}") + ":5").encode() for t in CORPUS]
    finally:
        execute(mysql, f"DROP DATABASE IF EXISTS {DB}")


@pytest.mark.parametrize("text", ["k:{id}\nDROP TABLE canary;\n-- ", "k:{id}\r", "k\x00:{id}", "k\u0085:{id}"])
def test_control_characters_are_refused_at_load(text: str) -> None:
    with pytest.raises(ConfigError, match="control character"):
        parse({"tables": {"a.b": {"key": text}}})
