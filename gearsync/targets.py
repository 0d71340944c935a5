"""A table's extra targets: what a row writes besides its own key.

    [[tables."shop.users".targets]]
    type = "set"                      # SADD tag:{tag} {id}
    key = "tag:{tag}"
    member = "{id}"

    [[tables."shop.users".targets]]
    type = "zset"                     # ZADD leaderboard {score} {id}
    key = "leaderboard"
    member = "{id}"
    score = "score"                   # a column or a field (numeric)

    [[tables."shop.users".targets]]
    type = "stream"                   # XADD users:changes MAXLEN ~ 10000 * op … key … version … row …
    key = "users:changes"
    maxlen = 10000

Placeholders of ``key`` and ``member`` name columns or fields (``fields = {…}``); the database
computes them in the read (:mod:`gearsync.computed`), so the worker, backfill and verify agree.
A placeholder that is NULL puts the row in no set (and a NULL score in no sorted set).

Every placement a row makes is recorded beside it, under :func:`gearsync.keys.record_key`
(``gearsync:r:<target id>:<row key>``, a hash ``v`` version, ``k`` key, ``m`` member, ``i``
stream entry id), by the same script call that writes it: so a row that changes its tag leaves
the old set, a replay or an older change is a no-op, and verify knows what each row placed.
The target id is a digest of the table, type, key and member templates: a changed mapping
starts new records (run ``gearsync verify --repair``).
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["TargetConfig", "TARGET_TYPES", "parse_target", "template_names", "DEFAULT_MAXLEN"]

TARGET_TYPES = ("set", "zset", "stream")
#: Entries a stream target keeps (XADD MAXLEN ~) when ``maxlen`` is not given.
DEFAULT_MAXLEN = 100_000
_FIELDS = {"type", "key", "member", "score", "maxlen"}


@dataclass(frozen=True)
class TargetConfig:
    """One extra target of a table (see the module's docstring)."""

    type: str
    key: str
    member: str | None = None
    score: str | None = None
    maxlen: int = DEFAULT_MAXLEN
    table: str = ""

    @property
    def id(self) -> bytes:
        """A short, stable name for this target's records (a digest of what it maps)."""
        text = "\0".join((self.table, self.type, self.key, self.member or "", self.score or ""))
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:10].encode()

    @property
    def names(self) -> tuple[str, ...]:
        """Columns or fields the target reads."""
        out = list(template_names(self.key)) + (list(template_names(self.member)) if self.member else [])
        return tuple(dict.fromkeys(out + ([self.score] if self.score else [])))

    def describe(self) -> str:
        if self.type == "stream":
            return f"stream {self.key} (maxlen {self.maxlen})"
        return f"{self.type} {self.key} member {self.member}" + (f" score {self.score}" if self.score else "")


def template_names(template: str) -> tuple[str, ...]:
    """The placeholders of a template, in order (ValueError for a malformed one)."""
    names: list[str] = []
    for _literal, fname, spec, conv in string.Formatter().parse(template):
        if fname is None:
            continue
        if not fname or spec or conv or any(ch in fname for ch in ".[]"):
            raise ValueError(f"placeholder {{{fname}}} must be a bare column or field name")
        if fname not in names:
            names.append(fname)
    return tuple(names)


def parse_target(spec: Any, where: str, table: str) -> TargetConfig:
    """One ``[[tables."…".targets]]`` entry; ValueError whose message starts with the field."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a table of settings ([[tables.\"s.t\".targets]])")
    unknown = set(spec) - _FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r} (expected {', '.join(sorted(_FIELDS))})")
    kind = spec.get("type")
    if kind not in TARGET_TYPES:
        raise ValueError(f"{where}.type: {kind!r} is not one of {', '.join(TARGET_TYPES)} (a table's own key "
                         "takes value = \"json\" | \"hash\" | \"column\" | \"redisjson\")")
    key = _template(spec.get("key"), f"{where}.key", allow_constant=True)
    if key.startswith("gearsync:"):
        raise ValueError(f"{where}.key: keys under \"gearsync:\" are gearsync's own: choose another prefix")
    member = score = None
    maxlen = DEFAULT_MAXLEN
    if kind in ("set", "zset"):
        member = _template(spec.get("member"), f"{where}.member", allow_constant=False)
    elif "member" in spec:
        raise ValueError(f"{where}.member: only for type = \"set\" or \"zset\"")
    if kind == "zset":
        score = spec.get("score")
        if not isinstance(score, str) or not score or any(ord(c) < 32 for c in score):
            raise ValueError(f"{where}.score: type = \"zset\" needs score = \"<column or field>\"")
    elif "score" in spec:
        raise ValueError(f"{where}.score: only for type = \"zset\"")
    if kind == "stream":
        if template_names(key):
            raise ValueError(f"{where}.key: a stream's key is one fixed name (its events name their row), "
                             f"not a template: {key!r}")
        maxlen = spec.get("maxlen", DEFAULT_MAXLEN)
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen <= 0:
            raise ValueError(f"{where}.maxlen: expected a positive number of entries, got {maxlen!r}")
    elif "maxlen" in spec:
        raise ValueError(f"{where}.maxlen: only for type = \"stream\"")
    return TargetConfig(kind, key, member, score, maxlen, table)


def _template(v: Any, where: str, allow_constant: bool) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{where}: expected a template such as \"tag:{{tag}}\"")
    bad = next((ch for ch in v if ord(ch) < 32 or 127 <= ord(ch) < 160), None)
    if bad is not None:
        raise ValueError(f"{where}: {v!r} holds the control character {bad!r}")
    try:
        names = template_names(v)
    except ValueError as e:
        raise ValueError(f"{where}: bad template {v!r}: {e} (write {{{{ or }}}} for a literal brace)") from None
    if not names and not allow_constant:
        raise ValueError(f"{where}: the template {v!r} names no column (e.g. \"{{id}}\")")
    return v
