"""Command line: ``gearsync worker [options]``, ``gearsync status``, ``gearsync --version``.

Parses, then calls the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from . import __version__
from .settings import Settings, SettingsError, parse_servers

__all__ = ["main", "build_parser"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _servers(text: str) -> list[tuple[str, int]]:
    try:
        return parse_servers(text)
    except SettingsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be >= 1")
    return n


def _seconds(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"{x} must be >= 0")
    return x


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gearsync", description="Keep Redis consistent with MySQL/MariaDB via Gearman.")
    p.add_argument("--version", action="version", version=f"gearsync {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    w = sub.add_parser(
        "worker", help="take jobs from gearmand and apply them to Redis",
        description="Take jobs from gearmand and apply them to Redis. Options override the "
        "environment (GEARSYNC_GEARMAN, GEARSYNC_REDIS_URL, GEARSYNC_FUNCTION, GEARSYNC_WINDOW, "
        "GEARSYNC_BATCH_SIZE, GEARSYNC_LOG_LEVEL, GEARSYNC_MYSQL_URL, GEARSYNC_SWEEP_INTERVAL, "
        "GEARSYNC_SWEEP_AGE, GEARSYNC_TOMBSTONE_TTL), which overrides the defaults.",
    )
    w.add_argument("--gearman", metavar="HOST[:PORT][,...]", type=_servers,
                   help="gearmand servers (default 127.0.0.1:4730; port defaults to 4730)")
    w.add_argument("--redis-url", metavar="URL", help="Redis URL (default redis://127.0.0.1:6379/0)")
    w.add_argument("--function", metavar="NAME", action="append", dest="functions",
                   help="Gearman function to serve (repeatable; default syncToRedis)")
    w.add_argument("--window", metavar="N", type=_positive, help="GRAB requests kept outstanding per server (32)")
    w.add_argument("--batch-size", metavar="N", type=_positive, help="jobs applied per Redis round trip (512)")
    w.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="log level (INFO)")
    w.add_argument("--mysql", metavar="URL", dest="mysql_url",
                   help="safe mode: the outbox's database, mysql://user[:password]@host[:port]/ (off if not given)")
    w.add_argument("--sweep-interval", metavar="S", type=_seconds,
                   help="safe mode: seconds between outbox sweeps (1)")
    w.add_argument("--sweep-age", metavar="S", type=_seconds,
                   help="safe mode: sweep committed outbox rows older than this (5)")
    w.add_argument("--tombstone-ttl", metavar="S", type=_positive,
                   help="safe mode: seconds a deleted key's version is kept (86400)")
    st = sub.add_parser(
        "status", help="outbox lag and reachability; exit 1 if something is unreachable",
        description="Print the outbox size, the age of its oldest row, and whether MariaDB, Redis and "
        "gearmand answer (exit 0 if all do, else 1). Defaults come from the environment like the worker's.",
    )
    st.add_argument("--mysql", metavar="URL", dest="mysql_url", help="outbox database (GEARSYNC_MYSQL_URL)")
    st.add_argument("--redis-url", metavar="URL", help="Redis URL (GEARSYNC_REDIS_URL)")
    st.add_argument("--gearman", metavar="HOST[:PORT][,...]", type=_servers, help="gearmand servers")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    w.add_argument("--metrics-port", metavar="PORT", type=_positive,
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (GEARSYNC_METRICS_PORT; with "
                   "--concurrency N, worker i uses PORT+i)")
    w.add_argument("--log-format", choices=("text", "json"), help="log line format (GEARSYNC_LOG_FORMAT; text)")
    w.add_argument("--concurrency", metavar="N", type=_positive,
                   help="run N worker processes under one supervisor (GEARSYNC_CONCURRENCY; 1)")
    w.add_argument("--config", metavar="FILE", help="gearsync.toml: connections and table mappings "
                   "(GEARSYNC_CONFIG); options and GEARSYNC_* variables override its connections")
    _table_commands(sub)
    return p


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="gearsync.toml (GEARSYNC_CONFIG, else ./gearsync.toml)")
    p.add_argument("--mysql", metavar="URL", dest="mysql_url", help="database (overrides [mysql] url)")


def _table_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    t = sub.add_parser("triggers", help="print the trigger SQL of the configured tables",
                       description="Print the trigger SQL (a script for the mysql client) of every "
                       "configured table, after checking the config against the live schema.")
    _config_args(t)
    t.add_argument("--mode", choices=("safe", "direct"), help="override every table's mode")
    i = sub.add_parser("install", help="check the config against the database, then create the triggers")
    _config_args(i)
    i.add_argument("--mode", choices=("safe", "direct"), help="override every table's mode")
    u = sub.add_parser("uninstall", help="drop the triggers of the configured tables")
    _config_args(u)
    for name, helptext in (("backfill", "load the configured tables' existing rows into Redis (resumable)"),
                           ("verify", "compare the configured tables with Redis; exit 1 on drift")):
        b = sub.add_parser(name, help=helptext, description=helptext)
        _config_args(b)
        b.add_argument("--redis-url", metavar="URL", help="Redis URL (overrides [redis] url)")
        b.add_argument("--table", metavar="SCHEMA.TABLE", action="append", dest="tables",
                       help="only this configured table (repeatable)")
        b.add_argument("--chunk", metavar="N", type=_positive, default=10000, help="rows per chunk (10000)")
        b.add_argument("--quiet", action="store_true", help="no progress line on stderr")
        if name == "backfill":
            b.add_argument("--restart", action="store_true", help="ignore a checkpoint, start from the first row")
            b.add_argument("--jobs", metavar="N", type=_positive, default=1,
                           help="split each table's primary-key range over N processes (1)")
        else:
            b.add_argument("--repair", action="store_true", help="fix what drifted (versioned, never "
                           "overwriting a live change)")
            b.add_argument("--json", action="store_true", help="print one JSON object")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "status":
        return status_command(args, parser)
    if args.command in TABLE_COMMANDS:
        return table_command(args, parser)
    try:
        settings = Settings.from_env(
            os.environ, gearman=args.gearman, redis_url=args.redis_url, functions=args.functions,
            window=args.window, batch_size=args.batch_size, log_level=args.log_level,
            mysql_url=args.mysql_url, sweep_interval=args.sweep_interval, sweep_age=args.sweep_age,
            tombstone_ttl=args.tombstone_ttl,
        )
    except SettingsError as e:
        parser.error(str(e))
    if settings.log_level not in LOG_LEVELS:
        parser.error(f"GEARSYNC_LOG_LEVEL={settings.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
    log_format = args.log_format or os.environ.get("GEARSYNC_LOG_FORMAT", "text")
    if log_format not in ("text", "json"):
        parser.error(f"GEARSYNC_LOG_FORMAT={log_format!r}: expected text or json")
    from .logs import configure

    configure(settings.log_level, log_format)
    port = args.metrics_port or (int(os.environ["GEARSYNC_METRICS_PORT"])
                                 if os.environ.get("GEARSYNC_METRICS_PORT", "").isdigit() else None)
    settings.metrics_port = port
    concurrency = args.concurrency or int(os.environ.get("GEARSYNC_CONCURRENCY", "1") or 1)
    cfg_path = args.config or os.environ.get("GEARSYNC_CONFIG")
    if cfg_path:
        from .config import ConfigError, load

        try:
            cfg = load(cfg_path)
        except ConfigError as e:
            parser.error(str(e))
        settings.tables = dict(cfg.tables)
        # the config's connections, unless an option or the environment chose
        if args.gearman is None and not os.environ.get("GEARSYNC_GEARMAN"):
            settings.gearman = parse_servers(",".join(cfg.gearman))
        if args.redis_url is None and not os.environ.get("GEARSYNC_REDIS_URL"):
            settings.redis_url = cfg.redis_url
        if settings.mysql_url is None and cfg.mysql_url:
            settings.mysql_url = cfg.mysql_url
        if any(t.mode == "safe" for t in cfg.tables.values()) and not settings.mysql_url:
            parser.error(f"{cfg.source}: safe-mode tables need a MySQL URL ([mysql] url or --mysql)")
    if concurrency > 1:
        from .supervise import run_workers

        return run_workers(settings, concurrency, lambda: configure(settings.log_level, log_format))
    from .worker import Worker

    return Worker(settings).run_forever()


TABLE_COMMANDS = ("triggers", "install", "uninstall", "backfill", "verify")


def table_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """triggers / install / uninstall / backfill / verify: load the config, call the library."""
    import json

    from .config import ConfigError, load

    configure_logging(os.environ.get("GEARSYNC_LOG_LEVEL", "WARNING").upper())
    path = args.config or os.environ.get("GEARSYNC_CONFIG") or "gearsync.toml"
    try:
        cfg = load(path)
    except ConfigError as e:
        print(f"gearsync {args.command}: {e}", file=sys.stderr)
        return 2
    url = args.mysql_url or os.environ.get("GEARSYNC_MYSQL_URL") or cfg.mysql_url
    if not url:
        print(f"gearsync {args.command}: no MySQL URL ([mysql] url in {path}, --mysql or GEARSYNC_MYSQL_URL)",
              file=sys.stderr)
        return 2
    from . import backfill, install, verify

    try:
        if args.command in ("triggers", "install", "uninstall"):
            conn = install.connect(url)
            try:
                if args.command == "triggers":
                    sys.stdout.write(install.triggers_script(cfg, conn, args.mode))
                elif args.command == "install":
                    names = install.install(cfg, conn, args.mode)
                    print(f"installed triggers on {len(names)} tables: {', '.join(names)}")
                else:
                    names = install.uninstall(cfg, conn)
                    print(f"dropped the triggers of {len(names)} tables: {', '.join(names)}")
            finally:
                conn.close()
            return 0
        redis_url = args.redis_url or os.environ.get("GEARSYNC_REDIS_URL") or cfg.redis_url
        if args.command == "backfill":
            for r in backfill.backfill(cfg, args.tables, mysql_url=url, redis_url=redis_url, chunk=args.chunk,
                                       restart=args.restart, progress=not args.quiet, jobs=args.jobs):
                print(f"{r.table}: {r.rows} rows, {r.written} keys written ({r.rows - r.written} had a "
                      f"newer live change), {r.seconds:.1f} s, {r.rate:,.0f} rows/s")
            return 0
        reports = verify.verify(cfg, args.tables, repair=args.repair, mysql_url=url, redis_url=redis_url,
                                chunk=args.chunk, progress=not args.quiet)
    except (ConfigError, ValueError) as e:
        print(f"gearsync {args.command}: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the database or Redis refused or is unreachable
        print(f"gearsync {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"tables": [r.to_dict() for r in reports],
                          "drift": sum(r.drift for r in reports)}))
    else:
        for r in reports:
            print(r)
    drift = sum(r.drift for r in reports)
    repaired = sum(r.repaired for r in reports)
    if args.repair:
        return 0 if repaired >= drift else 1
    return 1 if drift else 0


def status_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .status import status

    try:
        settings = Settings.from_env(os.environ, gearman=args.gearman, redis_url=args.redis_url,
                                     mysql_url=args.mysql_url)
    except SettingsError as e:
        parser.error(str(e))
    st = status(settings.mysql_url, settings.redis_url, settings.gearman)
    print(st.to_json() if args.json else st)
    return 0 if st.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
