"""Command line: ``gearsync worker | status | triggers | install | uninstall | backfill | verify |
sql | udf``.

A thin shell: it parses options, hands them to :meth:`gearsync.settings.Settings.load` (the one
place the options, the environment and the TOML file merge), sets up logging once and calls
the library. Every command is also a Python function."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

from . import __version__, backfill, install, udf_library, verify, version_copy
from .config import ConfigError
from .connections import connect_mysql, redact
from .logs import configure
from .resources import sql_path
from .settings import LOG_FORMATS, LOG_LEVELS, Settings, SettingsError, parse_servers
from .status import DEFAULT_MAX_LAG, status_of
from .supervise import run_workers
from .worker import Worker

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)


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


def _config(p: argparse.ArgumentParser, mysql_help: str = "database (overrides [mysql] url)") -> None:
    p.add_argument("--config", metavar="FILE", dest="config_path",
                   help="gearsync.toml (GEARSYNC_CONFIG, else ./gearsync.toml)")
    p.add_argument("--mysql", metavar="URL", dest="mysql_url", help=mysql_help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gearsync", description="Keep Redis consistent with MySQL/MariaDB via Gearman.")
    p.add_argument("--version", action="version", version=f"gearsync {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    w = sub.add_parser(
        "worker", help="take jobs from gearmand and apply them to Redis",
        description="Take jobs from gearmand and apply them to Redis. Options override the "
        "environment (GEARSYNC_GEARMAN, GEARSYNC_REDIS_URL, GEARSYNC_FUNCTION, GEARSYNC_WINDOW, "
        "GEARSYNC_BATCH_SIZE, GEARSYNC_LOG_LEVEL, GEARSYNC_MYSQL_URL, GEARSYNC_SWEEP_INTERVAL, "
        "GEARSYNC_SWEEP_AGE, GEARSYNC_TOMBSTONE_TTL, …), which overrides the config file, which "
        "overrides the defaults.",
    )
    w.add_argument("--gearman", metavar="HOST[:PORT][,...]", type=_servers,
                   help="gearmand servers (default 127.0.0.1:4730; port defaults to 4730)")
    w.add_argument("--gearman-tls", action="store_const", const="1",
                   help="TLS to gearmand (GEARSYNC_GEARMAN_TLS; [gearman] tls; off)")
    w.add_argument("--gearman-ca", metavar="FILE", help="CA certificates that verify gearmand's TLS certificate "
                   "(GEARSYNC_GEARMAN_CA; default: the system's)")
    w.add_argument("--redis-url", metavar="URL", help="Redis URL (default redis://127.0.0.1:6379/0; a cluster: "
                   "redis+cluster://host:port,host:port; Sentinel: redis+sentinel://host:port,…/service/db)")
    w.add_argument("--redis-replicas", metavar="N", type=int, help="a batch is done once N replicas of its "
                   "primary have it (Redis WAIT; GEARSYNC_REDIS_REPLICAS; 0)")
    w.add_argument("--function", metavar="NAME", action="append", dest="functions",
                   help="Gearman function to serve (repeatable; default syncToRedis)")
    w.add_argument("--window", metavar="N", type=_positive,
                   help="GRAB requests kept outstanding per server, at most (256)")
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
    w.add_argument("--metrics-port", metavar="PORT", type=_positive,
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (GEARSYNC_METRICS_PORT; with "
                   "--concurrency N, worker i uses PORT+i)")
    w.add_argument("--log-format", choices=LOG_FORMATS, help="log line format (GEARSYNC_LOG_FORMAT; text)")
    w.add_argument("--concurrency", metavar="N", type=_positive,
                   help="run N worker processes under one supervisor (GEARSYNC_CONCURRENCY; 1)")
    w.add_argument("--config", metavar="FILE", dest="config_path",
                   help="gearsync.toml: connections and table mappings (GEARSYNC_CONFIG, else "
                   "./gearsync.toml if it exists); options and GEARSYNC_* variables override its connections")
    st = sub.add_parser(
        "status", help="lag, queues and health; exit 1 if anything is unhealthy",
        description="Print the outbox size and lag (also per configured table, with when its changes were "
        "last applied and whether its schema and triggers still fit the config), each gearmand's "
        "queues and workers, the dead letters, and whether MariaDB, Redis and gearmand answer. Exit 1 "
        "if anything is unhealthy: unreachable, schema drift, dead letters, jobs queued with no worker, "
        "or an outbox lag over --max-lag. Settings come from the options, the environment and the "
        "config file, like every command's.",
    )
    _config(st, "outbox database (GEARSYNC_MYSQL_URL)")
    st.add_argument("--redis-url", metavar="URL", help="Redis URL (GEARSYNC_REDIS_URL)")
    st.add_argument("--gearman", metavar="HOST[:PORT][,...]", type=_servers, help="gearmand servers")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.add_argument("--max-lag", metavar="S", type=_seconds, default=DEFAULT_MAX_LAG,
                    help=f"unhealthy when the oldest outbox row is older than this ({DEFAULT_MAX_LAG:g})")
    for name, text in (("triggers", "print the trigger SQL (a script for the mysql client) of every configured "
                                    "table, after checking the config against the live schema"),
                       ("install", "check the config against the database, then create the triggers of "
                                   "every configured table"),
                       ("uninstall", "drop the triggers of the configured tables (tables and rows stay)")):
        t = sub.add_parser(name, help=text.split(",")[0].split(" (")[0], description=text[0].upper() + text[1:] + ".")
        _config(t)
        if name != "uninstall":
            t.add_argument("--mode", choices=("safe", "direct"), help="override every table's mode")
    for name, text in (("backfill", "load the configured tables' existing rows into Redis (resumable)"),
                       ("verify", "compare the configured tables with Redis; exit 1 on drift")):
        b = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _config(b)
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
    vs = sub.add_parser("versions", help="the versions gearsync keeps in Redis: copy them to a cluster",
                        description="`gearsync versions copy --from redis://old:6379/0` copies every version "
                        "(gearsync:v:<key>) of one Redis into the configured Redis (--redis-url, GEARSYNC_REDIS_URL "
                        "or [redis] url) in the form it needs: a cluster's version keys share their key's slot. "
                        "Run it once when moving to a Redis Cluster.")
    vact = vs.add_subparsers(dest="action", metavar="ACTION", required=True)
    cp = vact.add_parser("copy", help="copy the versions of one Redis into the configured one",
                         description="Copy every version of the Redis at --from into the configured Redis; a "
                         "version the target already has, or a newer one, is kept.")
    cp.add_argument("--from", metavar="URL", dest="source", required=True, help="the Redis the versions are in")
    cp.add_argument("--config", metavar="FILE", dest="config_path", help="gearsync.toml (for [redis] url)")
    cp.add_argument("--redis-url", metavar="URL", help="the Redis to copy into (GEARSYNC_REDIS_URL)")
    sq = sub.add_parser("sql", help="print the SQL scripts the package ships (for the mariadb client)",
                        description="Print a shipped SQL script: `gearsync sql install | mariadb` registers "
                        "the UDFs and creates the outbox and the demo tables (idempotent); `uninstall` "
                        "drops the functions and triggers.")
    sq.add_argument("script", choices=("install", "uninstall"))
    ud = sub.add_parser("udf", help="build gearsync_udf.so from the shipped C sources, or install it",
                        description="The UDF library from the package's own C sources.")
    actions = ud.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("build", "compile gearsync_udf.so with the host's mysql_config and C compiler (Debian: "
                                 "build-essential libmariadb-dev libmariadb-dev-compat libmariadbd-dev libgearman-dev)"),
                       ("install", "build gearsync_udf.so if needed, copy it into the server's SELECT @@plugin_dir "
                                   "and write gearsync_udf.cnf there unless one exists (what `make install-udf` does)")):
        a = actions.add_parser(name, help=text.split(" (")[0], description=text[0].upper() + text[1:] + ".")
        a.add_argument("--build-dir", metavar="DIR",
                       help=f"where the library is built (default {udf_library.default_build_dir()})")
        a.add_argument("--mysql-config", metavar="PATH",
                       help="mysql_config or mariadb_config (default: mysql_config, else mariadb_config, on PATH)")
        if name == "install":
            a.add_argument("--plugin-dir", metavar="DIR", help="the server's plugin dir (default: asked with "
                           "SELECT @@plugin_dir)")
            a.add_argument("--mysql", metavar="URL", dest="mysql_url", help="the server to ask for @@plugin_dir "
                           "(default GEARSYNC_MYSQL_URL or the config's [mysql] url, else the local socket as this "
                           "OS user, e.g. mysql://root@localhost/?unix_socket=/run/mysqld/mysqld.sock)")
            a.add_argument("--servers", metavar="HOST[:PORT][,...]", help="the job servers written into a new "
                           "gearsync_udf.cnf (default 127.0.0.1:4730; an existing file is kept)")
    return p


#: Options each command hands to Settings.load (the rest are the command's own).
_SETTINGS = ("config_path", "gearman", "gearman_tls", "gearman_ca", "redis_url", "functions", "window", "batch_size",
             "log_level", "mysql_url", "sweep_interval", "sweep_age", "tombstone_ttl", "metrics_port", "log_format",
             "concurrency", "redis_replicas")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    options = {k: v for k, v in vars(args).items() if k in _SETTINGS}
    package_command = args.command in ("sql", "udf", "versions")  # no tables of a config
    table_command = args.command not in ("worker", "status") and not package_command
    reads_config = not package_command or (args.command == "udf" and args.action == "install") or (
        args.command == "versions")  # --mysql's default; [redis] url
    try:
        settings = Settings.load(options, require_config=table_command, read_config=reads_config,
                                 defaults={"log_level": "WARNING"} if table_command or package_command else None)
    except (SettingsError, ConfigError) as e:
        if args.command == "worker":
            parser.error(str(e))
        print(f"gearsync {args.command}: {e}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    return COMMANDS[args.command](args, settings)


def worker_command(args: argparse.Namespace, settings: Settings) -> int:
    options = {k: v for k, v in vars(args).items() if k in _SETTINGS}

    def reloader() -> Settings:
        return Settings.load(options)

    if settings.concurrency > 1:
        return run_workers(settings, settings.concurrency,
                           lambda i: configure(settings.log_level, settings.log_format, worker=i), reloader)
    return Worker(settings, reloader=reloader).run_forever()


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    st = status_of(settings, args.max_lag)
    print(st.to_json() if args.json else st)
    return 0 if st.ok else 1


def _guarded(args: argparse.Namespace, fn: Callable[[], int]) -> int:
    """Run a table command; its errors become one line on stderr and exit code 2."""
    try:
        return fn()
    except (ConfigError, ValueError) as e:
        print(f"gearsync {args.command}: {e}", file=sys.stderr)
    except Exception as e:  # the database or Redis refused or is unreachable
        print(f"gearsync {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
    return 2


def triggers_command(args: argparse.Namespace, settings: Settings) -> int:
    cfg = settings.config
    assert cfg is not None

    def run() -> int:
        if not settings.mysql_url:
            raise ValueError(f"no MySQL URL ([mysql] url in {settings.config_path}, --mysql or GEARSYNC_MYSQL_URL)")
        conn = connect_mysql(settings.mysql_url)
        try:
            if args.command == "triggers":
                sys.stdout.write(install.triggers_script(cfg, conn, args.mode))
            elif args.command == "install":
                done = install.install(cfg, conn, args.mode, redis_url=settings.redis_url)
                for line in done.done:
                    print(line)
                for line in done.warnings:
                    print(f"warning: {line}", file=sys.stderr)
                print(f"installed triggers on {len(done)} tables: {', '.join(done)}")
            else:
                names = install.uninstall(cfg, conn)
                print(f"dropped the triggers of {len(names)} tables: {', '.join(names)}")
        finally:
            conn.close()
        return 0

    return _guarded(args, run)


def backfill_command(args: argparse.Namespace, settings: Settings) -> int:
    cfg = settings.config
    assert cfg is not None

    def run() -> int:
        for r in backfill.backfill(cfg, args.tables, mysql_url=settings.mysql_url,
                                   redis_url=settings.redis_url, chunk=args.chunk, restart=args.restart,
                                   progress=not args.quiet, jobs=args.jobs):
            print(f"{r.table}: {r.rows} rows, {r.written} keys written ({r.rows - r.written} had a "
                  f"newer live change), {r.seconds:.1f} s, {r.rate:,.0f} rows/s")
        return 0

    return _guarded(args, run)


def verify_command(args: argparse.Namespace, settings: Settings) -> int:
    cfg = settings.config
    assert cfg is not None
    reports: list[Any] = []

    def run() -> int:
        reports.extend(verify.verify(cfg, args.tables, repair=args.repair,
                                     mysql_url=settings.mysql_url, redis_url=settings.redis_url,
                                     chunk=args.chunk, progress=not args.quiet))
        return 0

    code = _guarded(args, run)
    if code:
        return code
    drift = sum(r.drift for r in reports)
    if args.json:
        print(json.dumps({"tables": [r.to_dict() for r in reports], "drift": drift}))
    else:
        for r in reports:
            print(r)
    if args.repair:
        return 0 if sum(r.repaired for r in reports) >= drift else 1
    return 1 if drift else 0


def versions_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        res = version_copy.copy_versions(args.source, settings.redis_url)
    except Exception as e:  # a URL refused, a Redis away
        print(f"gearsync versions copy: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(f"{res}; from {redact(args.source)} to {redact(settings.redis_url)}")
    return 0


def sql_command(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.buffer.write(sql_path(f"{args.script}.sql").read_bytes())
    sys.stdout.buffer.flush()
    return 0


def udf_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.action == "install":
            udf_library.server_list(args.servers)  # a bad --servers fails before the build
        library = udf_library.build(args.build_dir, args.mysql_config)
        if args.action == "build":
            print(f"built {library}")
            return 0
        plugin_dir = args.plugin_dir or udf_library.server_plugin_dir(settings.mysql_url)
        print(udf_library.install(library, plugin_dir, args.servers))
    except (udf_library.UdfError, OSError) as e:
        print(f"gearsync udf {args.action}: {e}", file=sys.stderr)
        return 2
    print("now: gearsync sql install | mariadb (and restart mysqld if it had loaded the library)")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "worker": worker_command, "status": status_command, "triggers": triggers_command,
    "install": triggers_command, "uninstall": triggers_command, "backfill": backfill_command,
    "verify": verify_command, "sql": sql_command, "udf": udf_command, "versions": versions_command,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
