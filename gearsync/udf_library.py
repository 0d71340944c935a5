"""The UDF library ``gearsync_udf.so``: build it from the C sources the package ships, install it
where the database server loads UDFs from. ``gearsync udf build`` / ``gearsync udf install``;
in a checkout ``make udf`` / ``make install-udf`` do the same.

* **Build**: ``make -f udf/udf.mk udf BUILD=<dir> VERSION=<gearsync.__version__>`` run in
  :func:`gearsync.resources.data_dir` (the installed package's ``_data``, or the checkout), with
  the host's ``mysql_config`` / ``mariadb_config`` and C compiler. Before make runs, each missing
  tool is named with the Debian package that provides it.
* **Where it goes**: by default :func:`default_build_dir`,
  ``$XDG_CACHE_HOME/gearsync/udf-<version>`` (``~/.cache/…``); ``gearsync udf install`` and,
  outside a checkout, :mod:`gearsync.testing` load it from there.
* **Install**: the server loads UDFs only from ``SELECT @@plugin_dir`` (``mysql_config
  --plugindir`` names the *client's* plugin dir on Debian), asked through a MySQL URL — by
  default the local server's socket as the OS user, as the ``mysql`` client does. The library
  is written beside its target and renamed over it, so a server that has the old one loaded
  keeps a valid mapping. ``gearsync_udf.cnf`` (the job servers, ``lock = on``) is written next
  to it when none exists; an existing one is never touched.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from . import __version__
from .connections import connect_mysql, redact
from .constants import DEFAULT_GEARMAN
from .resources import data_dir
from .settings import SettingsError, parse_servers

__all__ = ["LIBRARY", "CONFIG_FILE", "UdfError", "Installed", "default_build_dir", "find_mysql_config",
           "check_toolchain", "build", "default_mysql_url", "server_plugin_dir", "server_list", "config_text",
           "install"]

LIBRARY = "gearsync_udf.so"
CONFIG_FILE = "gearsync_udf.cnf"
#: Where a local server's socket is, most likely first (Debian, older Debian, upstream).
SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock")
#: Debian packages that provide what a build needs.
PACKAGES = {
    "compiler": "build-essential",
    "mysql_config": "libmariadb-dev libmariadb-dev-compat",
    "server headers": "libmariadbd-dev (MySQL: libmysqlclient-dev)",
    "libgearman": "libgearman-dev",
}


class UdfError(RuntimeError):
    """The library could not be built or installed; the message says what to do."""


def default_build_dir() -> Path:
    """``$XDG_CACHE_HOME/gearsync/udf-<version>``, else ``~/.cache/gearsync/udf-<version>``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "gearsync" / f"udf-{__version__}"


def _missing(what: str, detail: str) -> UdfError:
    return UdfError(f"{detail}; on Debian: apt-get install -y {PACKAGES[what]}")


def find_mysql_config(given: str | None = None) -> str:
    """The absolute path of ``given``, else of ``mysql_config``, else of ``mariadb_config``."""
    for name in ([given] if given else ["mysql_config", "mariadb_config"]):
        path = shutil.which(name)
        if path:
            return path
    raise _missing("mysql_config", f"{given} not found" if given else "neither mysql_config nor mariadb_config found")


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or "cc")


def check_toolchain(mysql_config: str) -> None:
    """Raise :class:`UdfError` naming the Debian package of the first missing piece: make, the C
    compiler, the server's UDF headers (via ``mysql_config``), libgearman's headers."""
    cc = _compiler()
    for tool in ("make", cc[0]):
        if not shutil.which(tool):
            raise _missing("compiler", f"{tool} not found")
    try:
        inc = subprocess.run([mysql_config, "--variable=pkgincludedir"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        raise _missing("mysql_config", f"{mysql_config} --variable=pkgincludedir failed ({e})") from None
    # MariaDB: <pkgincludedir>/server/mysql_com.h (libmariadbd-dev); MySQL >= 8.0: mysql.h includes
    # udf_registration_types.h, in <pkgincludedir> on Debian (libmysqlclient-dev), see udf/udf.mk.
    if not any(Path(inc, *p).is_file() for p in (("server", "mysql_com.h"), ("udf_registration_types.h",),
                                                  ("mysql", "udf_registration_types.h"))):
        raise _missing("server headers", f"no server UDF headers under {inc!r} ({mysql_config} --variable=pkgincludedir)")
    probe = subprocess.run([*cc, "-E", "-x", "c", "-o", os.devnull, "-"], input=b"#include <libgearman-1.0/gearman.h>\n",
                           capture_output=True, timeout=60)
    if probe.returncode != 0:
        raise _missing("libgearman", "libgearman-1.0/gearman.h not found by the C compiler")


def build(build_dir: str | os.PathLike[str] | None = None, mysql_config: str | None = None, *,
          jobs: int | None = None) -> Path:
    """Compile the shipped sources into ``<build_dir>/gearsync_udf.so`` (incrementally: make
    rebuilds what changed); its path. Compiler messages go to stderr."""
    out = Path(build_dir or default_build_dir()).absolute()
    if any(c.isspace() for c in str(out)):
        raise UdfError(f"build dir {str(out)!r} contains a space, which make cannot handle: pass --build-dir")
    config = find_mysql_config(mysql_config)
    check_toolchain(config)
    src = data_dir()
    argv = ["make", "-s", f"-j{jobs or os.cpu_count() or 1}", "-f", "udf/udf.mk", "udf",
            f"BUILD={out}", f"MYSQL_CONFIG={config}", f"VERSION={__version__}"]
    res = subprocess.run(argv, cwd=src)
    library = out / LIBRARY
    if res.returncode != 0 or not library.is_file():
        raise UdfError(f"make failed (exit {res.returncode}) in {src}: see the messages above")
    return library


def default_mysql_url() -> str:
    """The local server through its socket as the OS user (what the ``mysql`` client does):
    ``mysql://root@localhost/?unix_socket=/run/mysqld/mysqld.sock`` for root on Debian."""
    sock = next((s for s in SOCKETS if os.path.exists(s)), SOCKETS[0])
    return f"mysql://{quote(getpass.getuser(), safe='')}@localhost/?unix_socket={sock}"


def server_plugin_dir(mysql_url: str | None = None) -> Path:
    """``SELECT @@plugin_dir`` through ``mysql_url`` (default :func:`default_mysql_url`)."""
    url = mysql_url or default_mysql_url()
    try:
        conn = connect_mysql(url, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@plugin_dir")
                value = cur.fetchone()[0]
        finally:
            conn.close()
    except Exception as e:  # the driver's own error classes: unreachable, refused, bad URL
        raise UdfError(f"cannot ask the server for @@plugin_dir through {redact(url)} ({type(e).__name__}: {e}); "
                       "pass --mysql URL or --plugin-dir DIR (Debian: /usr/lib/mysql/plugin)") from None
    return Path(value.decode() if isinstance(value, bytes) else value)


def server_list(servers: str | None = None) -> str:
    """``servers`` (default 127.0.0.1:4730) validated and normalised: ``gm1, gm2:4731`` →
    ``gm1:4730, gm2:4731``."""
    try:
        parsed = parse_servers(servers or DEFAULT_GEARMAN)
    except SettingsError as e:
        raise UdfError(f"--servers: {e}") from None
    return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in parsed)


def config_text(servers: str | None = None) -> str:
    """A new ``gearsync_udf.cnf``: the job servers and ``lock = on``."""
    listed = server_list(servers)
    return ("# gearsync_udf.cnf: read by gearsync_udf.so once per mysqld start (written by gearsync udf install,\n"
            "# which never overwrites it). Where the server list and settings came from is one line in the\n"
            "# server error log.\n"
            f"servers = {listed}\n"
            "# on: gman_servers_set, gearsync_timeout_set, gearsync_do_timeout_set refuse at run time.\n"
            "lock = on\n"
            "# timeout_ms = 250        # background submits (at most 10000)\n"
            "# do_timeout_ms = 5000    # foreground gman_do* (at most 60000)\n"
            "# secret_file = /etc/mysql/gearsync.secret   # signs gearsync_send jobs; readable by mysqld only\n")


@dataclass(frozen=True)
class Installed:
    library: Path
    config: Path
    #: the servers written into a new cnf; None: one existed and was kept
    servers: str | None

    def __str__(self) -> str:
        cnf = (f"wrote {self.config} (servers = {self.servers}, lock = on)" if self.servers is not None
               else f"kept the existing {self.config} (not overwritten)")
        return f"installed {self.library}\n{cnf}"


def install(library: str | os.PathLike[str], plugin_dir: str | os.PathLike[str],
            servers: str | None = None) -> Installed:
    """Copy ``library`` to ``<plugin_dir>/gearsync_udf.so`` (mode 0644, renamed into place) and
    write ``gearsync_udf.cnf`` beside it unless one exists."""
    src, target_dir = Path(library), Path(plugin_dir)
    if not src.is_file():
        raise UdfError(f"{src} does not exist: run `gearsync udf build` first")
    listed, text = server_list(servers), config_text(servers)
    target_dir.mkdir(parents=True, exist_ok=True)
    target, tmp = target_dir / LIBRARY, target_dir / f".{LIBRARY}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    cnf = target_dir / CONFIG_FILE
    try:
        with open(cnf, "x", encoding="utf-8") as f:
            f.write(text)
        os.chmod(cnf, 0o644)
    except FileExistsError:
        return Installed(target, cnf, None)
    return Installed(target, cnf, listed)
