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
    return p


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
    configure_logging(settings.log_level)
    from .worker import Worker

    return Worker(settings).run_forever()


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
