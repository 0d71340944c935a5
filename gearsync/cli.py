"""Command line: ``gearsync worker [options]``, ``gearsync --version``. Parses, then calls the library."""

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gearsync", description="Keep Redis consistent with MySQL/MariaDB via Gearman.")
    p.add_argument("--version", action="version", version=f"gearsync {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    w = sub.add_parser(
        "worker", help="take jobs from gearmand and apply them to Redis",
        description="Take jobs from gearmand and apply them to Redis. Options override the "
        "environment (GEARSYNC_GEARMAN, GEARSYNC_REDIS_URL, GEARSYNC_FUNCTION, GEARSYNC_WINDOW, "
        "GEARSYNC_BATCH_SIZE, GEARSYNC_LOG_LEVEL), which overrides the defaults.",
    )
    w.add_argument("--gearman", metavar="HOST[:PORT][,...]", type=_servers,
                   help="gearmand servers (default 127.0.0.1:4730; port defaults to 4730)")
    w.add_argument("--redis-url", metavar="URL", help="Redis URL (default redis://127.0.0.1:6379/0)")
    w.add_argument("--function", metavar="NAME", action="append", dest="functions",
                   help="Gearman function to serve (repeatable; default syncToRedis)")
    w.add_argument("--window", metavar="N", type=_positive, help="GRAB requests kept outstanding per server (32)")
    w.add_argument("--batch-size", metavar="N", type=_positive, help="jobs applied per Redis round trip (512)")
    w.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="log level (INFO)")
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
    try:
        settings = Settings.from_env(
            os.environ, gearman=args.gearman, redis_url=args.redis_url, functions=args.functions,
            window=args.window, batch_size=args.batch_size, log_level=args.log_level,
        )
    except SettingsError as e:
        parser.error(str(e))
    if settings.log_level not in LOG_LEVELS:
        parser.error(f"GEARSYNC_LOG_LEVEL={settings.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
    configure_logging(settings.log_level)
    from .worker import Worker

    return Worker(settings).run_forever()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
