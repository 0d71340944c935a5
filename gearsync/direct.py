"""Direct mode for configured tables: a ``gearsync_direct`` job (see
:func:`gearsync.triggers.direct_triggers`) decoded and mapped by its table's config."""

from __future__ import annotations

import json
from typing import Any, Mapping

from .mapped import mapped_change
from .outbox import VersionedChange

__all__ = ["direct_changes"]


def direct_changes(workload: bytes, tables: Mapping[str, Any]) -> list[VersionedChange]:
    """A ``gearsync_direct`` job (see :func:`gearsync.triggers.direct_triggers`) → its writes."""
    obj = json.loads(workload)
    if type(obj) is not dict or not isinstance(obj.get("source"), str) or not isinstance(obj.get("k"), str):
        raise ValueError("not a gearsync_direct payload (source, op, k, old_k, json_row)")
    table = tables.get(obj["source"])
    if table is None:
        raise LookupError(f"table {obj['source']!r} is not configured")
    key = obj["k"].encode("utf-8", "surrogatepass")
    out: list[VersionedChange] = []
    old = obj.get("old_k")
    if isinstance(old, str) and old != obj["k"]:
        out.append(VersionedChange(old.encode("utf-8", "surrogatepass"), 0, None))
    row = obj.get("json_row")
    if obj.get("op") == "delete" or row is None:
        out.append(VersionedChange(key, 0, None))
    else:
        out.append(mapped_change(table, key, 0, json.dumps(row)))
    return out
