"""gearsync.triggers: the generated SQL, quoted under any name, and sql/install.sql kept equal to it."""

from __future__ import annotations

from typing import Any

import pytest

from gearsync.quoting import quote_ident, quote_string
from gearsync.testing.stack import Stack
from gearsync.triggers import INSTALL_BEGIN, INSTALL_END, install_section, safe_triggers, uninstall_section

from helpers import REPO_ROOT, SERVER


def test_install_sql_holds_exactly_the_generated_section() -> None:
    text = (REPO_ROOT / "sql" / "install.sql").read_text()
    start, end = text.index(INSTALL_BEGIN), text.index(INSTALL_END) + len(INSTALL_END) + 1
    assert text[start:end] == install_section(), (
        "sql/install.sql drifted from gearsync.triggers.install_section(): paste its output again")
    assert uninstall_section() in (REPO_ROOT / "sql" / "uninstall.sql").read_text()


def test_identifiers_and_strings_are_quoted() -> None:
    assert quote_ident("a`b") == "`a``b`"
    assert quote_string("test_safe:") == "'test_safe:'"
    assert quote_string("it's\\") == "CONVERT(X'" + "it's\\".encode().hex().upper() + "' USING utf8mb4)"
    with pytest.raises(ValueError):
        quote_ident("")
    sql = "\n".join(safe_triggers("we`ird db", "ta'ble", ["k`1", "k2"], ["v 1", "v2"], "pre'fix:"))
    assert "`we``ird db`.`ta'ble`" in sql and "NEW.`k``1`" in sql
    assert "'pre'fix" not in sql  # the prefix went in as a hex literal
    with pytest.raises(ValueError):
        safe_triggers("s", "t", [], ["v"])
    with pytest.raises(TypeError):
        safe_triggers("s", "t", "id", ["v"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        safe_triggers("s", "t", ["id"], ["v"], doorbell="sys_exec")
    assert "DO gearsync_send('gearsync', LAST_INSERT_ID(), LAST_INSERT_ID());" in "\n".join(
        safe_triggers("s", "t", ["id"], ["v"], doorbell="gearsync_send"))


def test_generated_triggers_work_for_an_odd_table(stack: Stack, mysql: Any) -> None:
    """Quoted names, a composite key, two value columns (the value is then the JSON object)."""
    with mysql.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS `we``ird db`")
        cur.execute("CREATE TABLE IF NOT EXISTS `we``ird db`.`ta'ble` (`k``1` INT, `k2` VARCHAR(10), "
                    "`v 1` VARCHAR(10), `v2` DECIMAL(5,2), PRIMARY KEY (`k``1`, `k2`))")
        try:
            for stmt in safe_triggers("we`ird db", "ta'ble", ["k`1", "k2"], ["v 1", "v2"], "pré'fix:"):
                cur.execute(stmt)
            cur.execute("INSERT INTO `we``ird db`.`ta'ble` VALUES (1, 'a', 'x', 1.50)")
            cur.execute("UPDATE `we``ird db`.`ta'ble` SET `k2` = 'b'")
            cur.execute("SELECT k, old_k, op, `row` FROM gearsync.outbox WHERE source = %s ORDER BY id",
                        ("we`ird db.ta'ble",))
            rows = cur.fetchall()
        finally:
            cur.execute("DROP DATABASE `we``ird db`")
            cur.execute("DELETE FROM gearsync.outbox")
    k = "pré'fix:1:".encode()
    # the value columns as the server's JSON_OBJECT prints them: MariaDB in the order given,
    # MySQL with its keys sorted (by length, then bytes); the same object either way
    obj = {"mariadb": '{"v 1": "x", "v2": 1.50}', "mysql": '{"v2": 1.50, "v 1": "x"}'}[SERVER]
    assert rows == ((k + b"a", None, "insert", obj), (k + b"b", k + b"a", "update", obj))
