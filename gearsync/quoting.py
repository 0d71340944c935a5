"""SQL text built from names that come from a config or the schema: identifiers and literals.

Identifiers are always backquoted (inner backticks doubled); string literals that are not
plain ASCII words are hex literals, so generated SQL is correct under any ``sql_mode`` and no
config text reaches SQL unquoted.
"""

from __future__ import annotations

import re
import string

__all__ = ["quote_ident", "quote_string", "qualified", "params", "MARK", "key_expr"]

_PLAIN = re.compile(r"[A-Za-z0-9_:./ @#$%+=,-]*\Z")
_P = "\x00P"  # a parameter mark while identifiers are spliced in (their % are doubled after)


def quote_ident(name: str) -> str:
    """`name` for SQL: backticks, inner backticks doubled; NUL and empty names rejected."""
    if not name or "\0" in name:
        raise ValueError(f"bad SQL identifier {name!r}")
    return "`" + name.replace("`", "``") + "`"


def quote_string(text: str) -> str:
    """A string literal: ``'plain'`` for simple ASCII, else a utf8mb4 hex literal."""
    if _PLAIN.match(text):
        return "'" + text + "'"
    return "CONVERT(X'" + text.encode("utf-8").hex().upper() + "' USING utf8mb4)"


def qualified(schema: str, table: str) -> str:
    """`schema`.`table`."""
    return quote_ident(schema) + "." + quote_ident(table)


#: Write :data:`MARK` where a DB-API parameter goes in SQL that holds quoted identifiers,
#: then pass the text through :func:`params` (identifiers may contain ``%``).
MARK = _P


def params(sql: str) -> str:
    """SQL with :data:`MARK` placeholders → DB-API ``%s`` form (literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace(_P, "%s")


def key_expr(alias: str, template: str) -> str:
    """SQL building the Redis key of ``alias``'s row from a key template
    (``order:{shop_id}:{id}`` → ``CONCAT('order:', NEW.`shop_id`, ':', NEW.`id`)``): the one
    expression the triggers, backfill and verify all use, so their keys are byte-identical."""
    parts: list[str] = []
    for literal, fname, _spec, _conv in string.Formatter().parse(template):
        if literal:
            parts.append(quote_string(literal))
        if fname is not None:
            parts.append(f"{alias}.{quote_ident(fname)}")
    return "CONCAT(" + ", ".join(parts) + ")"
