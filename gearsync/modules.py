"""The Redis modules a config needs, checked before anything is written.

``value = "redisjson"`` writes with ``JSON.SET``, a command of the RedisJSON module (not part
of Redis itself, and not packaged by Debian). :func:`require_modules` asks the Redis server
(``COMMAND INFO JSON.SET``, which needs no admin rights) and refuses the config with an error
naming the tables, so that install, backfill and verify stop before a write that Redis would
refuse for every row.
"""

from __future__ import annotations

from typing import Any

from .config import Config, ConfigError

__all__ = ["require_modules", "has_command"]


def has_command(client: Any, name: str) -> bool:
    """Whether the Redis server behind ``client`` (synchronous redis-py) knows ``name``."""
    # one string "COMMAND INFO": redis-py sends two words and, finding no parser for that
    # name, returns the raw reply ([None] for an unknown command)
    info = client.execute_command("COMMAND INFO", name)
    return bool(info) and info[0] is not None


def require_modules(cfg: Config, client: Any, where: str = "") -> None:
    """Raise ConfigError if a configured table needs a command the Redis server lacks."""
    tables = [t.display for t in cfg.tables.values() if t.value == "redisjson"]
    if tables and not has_command(client, "JSON.SET"):
        raise ConfigError(f"{cfg.source}: tables.{tables[0]!r}.value: \"redisjson\" needs the RedisJSON module "
                          f"(JSON.SET), which the Redis server{where} does not have: load it "
                          "(loadmodule /path/to/rejson.so in redis.conf) or choose value = \"json\" (a JSON "
                          "string, GET key)")
