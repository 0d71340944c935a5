"""What a read computes beside a row: the ``where`` filter, ``fields``, and the keys, members and
scores of a table's extra targets — SQL evaluated by the database in the one ``SELECT`` that
the worker, backfill and verify share (:class:`gearsync.scan.TableReader`), so the three agree
byte for byte.

The config's ``where`` and ``fields`` *are* SQL, by design: they are pasted into that SELECT
(each in parentheses, followed by a newline so that a trailing ``-- comment`` cannot swallow
the rest). Whoever may edit the config may run SQL with the worker's login: keep the file as
private as that login's password. Names and template literals are quoted as everywhere else
(:mod:`gearsync.quoting`).

A computed value appears in a read under an internal name that no column can have (it starts
with NUL): :func:`field_name` (``fields``), :data:`IN` (the filter, 1 or 0), and
:func:`target_name` (a target's ``k``, ``m``, ``s``). A field's kind (for
:mod:`gearsync.codec`) is the kind of the column it renames when its SQL is just a column name;
else it comes from the result's type (``DECIMAL`` → decimal, integers → int, ``DOUBLE`` →
float, dates and times → temporal, ``BIT`` → bit, ``JSON`` → json, geometry → geometry, strings
→ text, or binary when their charset is ``binary``): :func:`probe` asks the database once, with
a one-row read that touches no row (``LEFT JOIN … ON FALSE``), which also proves that every
expression compiles against the table.
"""

from __future__ import annotations

import re
import string
from typing import Any, Mapping

from .config import ConfigError, TableConfig
from .quoting import qualified, quote_ident, quote_string

__all__ = ["IN", "field_name", "target_name", "extras", "probe", "NUMERIC_KINDS"]

IN = "\0in"
NUMERIC_KINDS = ("int", "decimal", "float", "bit")
ALIAS = "_gs"

# MySQL protocol field types → gearsync.codec kinds (strings are decided by their charset)
_TYPE_KINDS = {0: "decimal", 246: "decimal", 1: "int", 2: "int", 3: "int", 8: "int", 9: "int", 13: "int",
               4: "float", 5: "float", 7: "temporal", 10: "temporal", 11: "temporal", 12: "temporal",
               14: "temporal", 16: "bit", 245: "json", 255: "geometry"}
_COLUMN = re.compile(r"\s*(?:([A-Za-z0-9_$]+)|`((?:[^`]|``)+)`)\s*\Z")


def field_name(name: str) -> str:
    return "\0f:" + name


def target_name(index: int, part: str) -> str:
    """``part``: "k" key, "m" member, "s" score."""
    return f"\0t{index}:{part}"


def _sql(expr: str) -> str:
    return "(" + expr + "\n)"


def _ref(cfg: TableConfig, name: str) -> str:
    """A column or a field as SQL."""
    fields = dict(cfg.fields)
    return _sql(fields[name]) if name in fields else f"{ALIAS}.{quote_ident(name)}"


def _template(cfg: TableConfig, template: str) -> str:
    """A target's key or member template as SQL (NULL when a placeholder is NULL)."""
    parts: list[str] = []
    for literal, fname, _spec, _conv in string.Formatter().parse(template):
        if literal:
            parts.append(quote_string(literal))
        if fname is not None:
            parts.append(_ref(cfg, fname))
    return "CONCAT(" + ", ".join(parts or ["''"]) + ")"


def extras(cfg: TableConfig) -> list[tuple[str, str]]:
    """(internal name, SQL) of everything a read of ``cfg``'s table computes besides its key."""
    out: list[tuple[str, str]] = []
    if cfg.where is not None:
        out.append((IN, f"({_sql(cfg.where)} IS TRUE)"))
    out += [(field_name(n), _sql(sql)) for n, sql in cfg.fields]
    for i, t in enumerate(cfg.targets):
        out.append((target_name(i, "k"), _template(cfg, t.key)))
        if t.member is not None:
            out.append((target_name(i, "m"), _template(cfg, t.member)))
        if t.score is not None:
            out.append((target_name(i, "s"), _ref(cfg, t.score)))
    return out


def _column_of(sql: str, columns: Mapping[str, str]) -> str | None:
    m = _COLUMN.match(sql)
    if not m:
        return None
    name = m.group(1) or m.group(2).replace("``", "`")
    return name if name in columns else None


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


def probe(conn: Any, cfg: TableConfig, kinds: Mapping[str, str], where: str) -> dict[str, str]:
    """Check that every computed expression of ``cfg`` compiles against its table and names only
    its columns and fields; the kinds of its fields (under :func:`field_name`). Raises
    ConfigError naming the field (``where`` is "file: tables.'s.t'")."""
    names = set(kinds) | set(cfg.field_names)
    for i, t in enumerate(cfg.targets):
        for n in t.names:
            if n not in names:
                raise ConfigError(f"{where}.targets[{i}]: no column or field {n!r} in {cfg.display} "
                                  f"(it has {', '.join(list(kinds) + list(cfg.field_names))})")
    for n in cfg.field_names:
        if n in cfg.value_columns(kinds) and cfg.value != "column":
            raise ConfigError(f"{where}.fields.{n}: the value already has a column {n!r}")
    exprs = extras(cfg)
    if not exprs:
        return {}
    fields = [(n, sql) for n, sql in exprs if n.startswith("\0f:")]
    select = [sql for _n, sql in exprs] + [f"CHARSET({sql})" for _n, sql in fields]
    source = f"(SELECT 1) AS _gs_one LEFT JOIN {qualified(cfg.schema, cfg.table)} AS {ALIAS} ON FALSE"
    with conn.cursor() as cur:
        try:
            cur.execute(f"SELECT {', '.join(select)} FROM {source}".replace("%", "%%"))
        except Exception:
            for n, sql in exprs:  # find the culprit
                try:
                    cur.execute(f"SELECT {sql} FROM {source}".replace("%", "%%"))
                    cur.fetchall()
                except Exception as e:
                    raise ConfigError(f"{where}.{_config_field(cfg, n)}: the database refuses it "
                                      f"({type(e).__name__}: {e})") from None
            raise
        row = cur.fetchone()
        types = {n: d[1] for (n, _sql), d in zip(exprs, cur.description)}
    charsets = dict(zip([n for n, _ in fields], row[len(exprs):]))
    out: dict[str, str] = {}
    for name, sql in cfg.fields:
        col = _column_of(sql, kinds)
        if col is not None:
            out[field_name(name)] = kinds[col]
            continue
        t = types[field_name(name)]
        out[field_name(name)] = _TYPE_KINDS.get(t) or ("binary" if _s(charsets[field_name(name)]) == "binary"
                                                       else "text")
    for i, t in enumerate(cfg.targets):
        if t.score is not None:
            kind = out.get(field_name(t.score)) or kinds.get(t.score)
            if kind not in NUMERIC_KINDS:
                raise ConfigError(f"{where}.targets[{i}].score: {t.score!r} is {kind}, not a number "
                                  "(CAST it in a field: fields = {{ s = \"CAST(x AS DECIMAL(20,4))\" }})")
    return out


def _config_field(cfg: TableConfig, name: str) -> str:
    if name == IN:
        return "where"
    if name.startswith("\0f:"):
        return "fields." + name[3:]
    i, part = name[2:].split(":")
    return f"targets[{i}].{ {'k': 'key', 'm': 'member', 's': 'score'}[part] }"
