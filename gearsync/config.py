"""The TOML configuration: connections, and how each source table maps to Redis.

    [gearman]
    servers = ["127.0.0.1:4730"]

    [redis]
    url = "redis://127.0.0.1:6379/0"

    [mysql]
    url = "mysql://gearsync@127.0.0.1:3306/"

    [tables."shop.users"]
    key = "user:{id}"                 # placeholders are column names; {{ and }} are literal braces
    value = "json"                    # "json" (the row), "hash" (a Redis hash), or "column"
    exclude = ["password_hash"]       # or columns = ["id", "name", "email"]
    ttl = 3600                        # seconds; omit for no expiry
    mode = "safe"                     # "safe" (default) or "direct"

    [tables."shop.orders"]
    key = "order:{shop_id}:{id}"
    value = "column"
    column = "status"                 # the key holds this one column as a string
    where = "status <> 'draft'"       # SQL: rows outside it are absent from Redis
    fields = { total = "price * qty", state = "status" }   # SQL computed in the read; a rename

    [[tables."shop.orders".targets]]  # more targets: set, zset, stream (gearsync.targets)
    type = "set"
    key = "orders:{state}"
    member = "{id}"

Every error names the file, the table and the field. :func:`gearsync.schema.resolve` compares
the tables and columns with a live database before anything is installed.
"""

from __future__ import annotations

import os
import re
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .targets import TargetConfig, parse_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

__all__ = ["Config", "TableConfig", "ConfigError", "load", "parse", "VALUE_SHAPES", "MODES"]

VALUE_SHAPES = ("json", "hash", "column", "redisjson")
MODES = ("safe", "direct")
_TABLE_FIELDS = {"key", "value", "column", "columns", "exclude", "ttl", "mode", "where", "fields", "targets"}
_TOP_FIELDS = {"gearman", "redis", "mysql", "tables"}
# schema.table, each part a plain identifier or a backquoted one (`` doubles a backtick).
_IDENT = r"(?:[A-Za-z0-9_$\u0080-\uffff]+|`(?:[^`]|``)+`)"
_QUALIFIED = re.compile(rf"^({_IDENT})\.({_IDENT})$")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class TableConfig:
    """How one source table maps to Redis."""

    schema: str
    table: str
    key: str
    key_columns: tuple[str, ...]
    value: str = "json"
    column: str | None = None
    columns: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    ttl: int | None = None
    mode: str = "safe"
    #: SQL condition; a row for which it is not true maps to nothing (its keys are deleted).
    where: str | None = None
    #: (name, SQL expression) computed in the read, in config order.
    fields: tuple[tuple[str, str], ...] = ()
    targets: tuple[TargetConfig, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def display(self) -> str:
        """schema.table as written in the config (parts backquoted where they need it)."""
        return f"{_show(self.schema)}.{_show(self.table)}"

    def render_key(self, row: Mapping[str, Any]) -> str:
        """The Redis key of a row (a mapping of column name to value)."""
        try:
            return self.key.format_map({c: _key_text(row[c], c) for c in self.key_columns})
        except KeyError as e:
            raise ValueError(f"{self.name}: row has no key column {e.args[0]!r}") from None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(n for n, _sql in self.fields)

    def value_columns(self, all_columns: Iterable[str]) -> list[str]:
        """The table columns that go into the value, in table order (fields come after them;
        with ``fields`` and neither ``columns`` nor ``exclude``, no table column)."""
        if self.value == "column":
            assert self.column is not None
            return [] if self.column in self.field_names else [self.column]
        if self.fields and self.columns is None and not self.exclude:
            return []
        cols = [c for c in all_columns if self.columns is None or c in self.columns]
        return [c for c in cols if c not in self.exclude]


def _show(ident: str) -> str:
    return ident if re.fullmatch(r"[A-Za-z0-9_$]+", ident) else "`" + ident.replace("`", "``") + "`"


def _key_text(value: Any, column: str) -> str:
    if value is None:
        raise ValueError(f"key column {column!r} is NULL")
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


@dataclass
class Config:
    """Connections and table mappings; ``source`` is the file it came from."""

    gearman: list[str] | None = None
    #: TLS to gearmand: on/off (None: not said), and the files: "ca", "cert", "key" → path
    gearman_tls: bool | None = None
    gearman_files: dict[str, str] = field(default_factory=dict)
    redis_url: str | None = None
    mysql_url: str | None = None
    tables: dict[str, TableConfig] = field(default_factory=dict)
    source: str = "<config>"

    def subset(self, tables: Iterable[TableConfig]) -> "Config":
        """The same config with only ``tables``."""
        return Config(self.gearman, self.gearman_tls, dict(self.gearman_files), self.redis_url, self.mysql_url,
                      {t.name: t for t in tables}, self.source)

    def table(self, name: str) -> TableConfig:
        try:
            return self.tables[name]
        except KeyError:
            raise ConfigError(f"{self.source}: no table {name!r} is configured") from None


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read it: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse(data, source=str(p))


def parse(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate an already-parsed TOML document."""
    unknown = set(data) - _TOP_FIELDS
    if unknown:
        raise ConfigError(f"{source}: unknown section {sorted(unknown)[0]!r} "
                          f"(expected {', '.join(sorted(_TOP_FIELDS))})")
    cfg = Config(source=source)
    g = _section(data, "gearman", source)
    if "servers" in g:
        servers = g["servers"]
        if isinstance(servers, str):
            servers = [s for s in servers.split(",") if s.strip()]
        if not isinstance(servers, list) or not servers or not all(isinstance(s, str) and s.strip() for s in servers):
            raise ConfigError(f"{source}: gearman.servers: expected a non-empty list of \"host:port\" strings")
        cfg.gearman = [s.strip() for s in servers]
    unknown = set(g) - {"servers", "tls", "ca", "cert", "key", "secret_file"}
    if unknown:
        raise ConfigError(f"{source}: gearman.{sorted(unknown)[0]}: unknown (expected servers, tls, ca, cert, key, "
                          "secret_file)")
    if "tls" in g:
        if not isinstance(g["tls"], bool):
            raise ConfigError(f"{source}: gearman.tls: expected true or false")
        cfg.gearman_tls = g["tls"]
    for name in ("ca", "cert", "key", "secret_file"):
        if name in g:
            cfg.gearman_files[name] = _string(g[name], f"{source}: gearman.{name}")
    r = _section(data, "redis", source)
    if "url" in r:
        cfg.redis_url = _string(r["url"], f"{source}: redis.url")
    m = _section(data, "mysql", source)
    if "url" in m:
        cfg.mysql_url = _string(m["url"], f"{source}: mysql.url")
    tables = data.get("tables", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: tables: expected [tables.\"schema.table\"] sections")
    for name, spec in tables.items():
        t = _table(name, spec, source)
        if t.name in cfg.tables:
            raise ConfigError(f"{source}: tables.{name!r}: configured twice")
        cfg.tables[t.name] = t
    return cfg


def _section(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    sec = data.get(name, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"{source}: {name}: expected a [{name}] section")
    return sec


def _string(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: expected a non-empty string")
    return v


def _unquote(ident: str) -> str:
    return ident[1:-1].replace("``", "`") if ident.startswith("`") else ident


def _table(name: str, spec: Any, source: str) -> TableConfig:
    where = f"{source}: tables.{name!r}"
    m = _QUALIFIED.match(name)
    if not m:
        raise ConfigError(f"{where}: the table must be named \"schema.table\" "
                          "(backquote a part that holds a dot: \"shop.`odd.name`\")")
    schema, table = _unquote(m.group(1)), _unquote(m.group(2))
    _no_control(name, f"{where}: the table name")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table of settings")
    unknown = set(spec) - _TABLE_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r} (expected {', '.join(sorted(_TABLE_FIELDS))})")
    if "key" not in spec:
        raise ConfigError(f"{where}.key: missing (e.g. key = \"user:{{id}}\")")
    key = _no_control(_string(spec["key"], f"{where}.key"), f"{where}.key")
    key_columns = _template_columns(key, f"{where}.key")
    if key.startswith("gearsync:"):
        raise ConfigError(f"{where}.key: keys under \"gearsync:\" are gearsync's own (versions, tombstones, "
                          "checkpoints): choose another prefix")
    value = spec.get("value", "json")
    if value not in VALUE_SHAPES:
        raise ConfigError(f"{where}.value: {value!r} is not one of {', '.join(VALUE_SHAPES)}")
    column = spec.get("column")
    if value == "column":
        column = _no_control(_string(column, f"{where}.column"), f"{where}.column") if column is not None else None
        if column is None:
            raise ConfigError(f"{where}.column: value = \"column\" needs column = \"<name>\"")
    elif column is not None:
        raise ConfigError(f"{where}.column: only used with value = \"column\"")
    columns = spec.get("columns")
    if columns is not None:
        columns = tuple(_names(columns, f"{where}.columns"))
        if value == "column":
            raise ConfigError(f"{where}.columns: not used with value = \"column\"")
    exclude = tuple(_names(spec.get("exclude", []), f"{where}.exclude", allow_empty=True))
    if columns is not None and set(columns) & set(exclude):
        raise ConfigError(f"{where}.exclude: {sorted(set(columns) & set(exclude))[0]!r} is also in columns")
    ttl = spec.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        raise ConfigError(f"{where}.ttl: expected a positive number of seconds, got {ttl!r}")
    mode = spec.get("mode", "safe")
    if mode not in MODES:
        raise ConfigError(f"{where}.mode: {mode!r} is not one of {', '.join(MODES)}")
    cond = spec.get("where")
    if cond is not None:
        cond = _no_control(_string(cond, f"{where}.where"), f"{where}.where")
    fields = _fields(spec.get("fields", {}), f"{where}.fields")
    if columns is not None and set(columns) & {n for n, _ in fields}:
        raise ConfigError(f"{where}.fields: {sorted(set(columns) & {n for n, _ in fields})[0]!r} is also in columns")
    targets = []
    raw = spec.get("targets", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.targets: expected [[tables.\"{name}\".targets]] entries")
    for i, t in enumerate(raw):
        try:
            targets.append(parse_target(t, f"{where}.targets[{i}]", f"{schema}.{table}"))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return TableConfig(schema=schema, table=table, key=key, key_columns=key_columns, value=value,
                       column=column, columns=columns, exclude=exclude, ttl=ttl, mode=mode, where=cond,
                       fields=fields, targets=tuple(targets))


def _fields(v: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``fields = { name = "SQL expression", … }`` in config order."""
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a table such as {{ full_name = \"CONCAT(first, ' ', last)\" }}")
    out = []
    for name, sql in v.items():
        _no_control(name, f"{where}: the field name")
        out.append((name, _no_control(_string(sql, f"{where}.{name}"), f"{where}.{name}")))
    return tuple(out)


def _no_control(text: str, where: str) -> str:
    """``text`` unless it holds a control character (a newline would end an SQL comment, a NUL
    a C string): no such text names a real table or makes a sensible key."""
    bad = next((ch for ch in text if ord(ch) < 32 or 127 <= ord(ch) < 160), None)
    if bad is not None:
        raise ConfigError(f"{where}: {text!r} holds the control character {bad!r}")
    return text


def _names(v: Any, where: str, allow_empty: bool = False) -> list[str]:
    if not isinstance(v, list) or (not v and not allow_empty):
        raise ConfigError(f"{where}: expected a {'' if allow_empty else 'non-empty '}list of column names")
    out: list[str] = []
    for c in v:
        if not isinstance(c, str) or not c:
            raise ConfigError(f"{where}: {c!r} is not a column name")
        _no_control(c, where)
        if c in out:
            raise ConfigError(f"{where}: {c!r} is listed twice")
        out.append(c)
    return out


def _template_columns(template: str, where: str) -> tuple[str, ...]:
    cols: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ConfigError(f"{where}: bad template {template!r}: {e} (write {{{{ or }}}} for a literal brace)") from None
    for _literal, fname, spec, conv in parts:
        if fname is None:
            continue
        if not fname or spec or conv or any(ch in fname for ch in ".[]"):
            raise ConfigError(f"{where}: placeholder {{{fname}{'!' + conv if conv else ''}"
                              f"{':' + spec if spec else ''}}} must be a bare column name")
        if fname not in cols:
            cols.append(fname)
    if not cols:
        raise ConfigError(f"{where}: the key template {template!r} names no column (e.g. \"user:{{id}}\")")
    return tuple(cols)
