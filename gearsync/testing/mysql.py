"""A throwaway Oracle MySQL server for tests and benches: mysqld in a Podman container.

Debian's MySQL (``mysql-server`` from unstable) cannot be installed beside our MariaDB and
gearmand, so it runs in the image ``scripts/mysql-image.sh`` makes once (``make mysql-image``;
``$GEARSYNC_MYSQL_IMAGE``, default ``localhost/gearsync-mysql:sid``) with the host's network:
it listens on a free loopback port like every other daemon here, and gearmand and Redis stay
on the host.

* **Same paths inside and out.** The daemon's directory (data dir, socket, log) and the plugin
  dir are bind-mounted at their host paths, so ``@@plugin_dir``, a ``gearsync_udf.cnf`` a test
  writes next to the library, the error log and the socket path mean the same on both sides.
* **The UDF library** is built from the checkout's ``udf/`` in a throwaway container of the same
  image (:func:`build_udf`, ``make udf-mysql``: its ``mysql_config``, whose ``mysql.h`` carries
  ``UDF_ARGS``, and its libgearman) into ``build/mysql/``. The image stays independent of our
  sources, so it is made once and cached, and make rebuilds only what changed.
* **The data dir** is copied from a template that ``mysqld --initialize-insecure`` made once per
  image (10 s here; a copy takes a fraction of a second) under the user's cache directory. Its
  init file adds ``root@127.0.0.1`` (``caching_sha2_password``, no password) for TCP clients.
* **Faults.** :attr:`pid` is mysqld's pid on the host (``podman inspect``), so ``pause()`` /
  ``resume()`` / ``kill()`` / ``stop()`` signal mysqld itself, as for a local daemon; the
  container (``--rm``) goes away with it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from gearsync.resources import checkout_root
from gearsync.udf_library import LIBRARY

from .daemons import StackError
from .sqlserver import SqlServer

__all__ = ["MySQL", "IMAGE_ENV", "DEFAULT_IMAGE", "image", "require_image", "build_udf", "mysql_plugin_dir"]

IMAGE_ENV = "GEARSYNC_MYSQL_IMAGE"
DEFAULT_IMAGE = "localhost/gearsync-mysql:sid"

#: The image's own plugin dir, and the components mysqld loads from the plugin dir at startup.
IMAGE_PLUGIN_DIR = "/usr/lib/mysql/plugin"
_COMPONENTS = ("component_reference_cache.so",)

#: Run by ``mysqld --initialize-insecure`` (which makes only root@localhost, for the socket).
_INIT_SQL = """CREATE USER 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
GRANT PROXY ON ''@'' TO 'root'@'127.0.0.1' WITH GRANT OPTION;
"""


def image() -> str:
    """``$GEARSYNC_MYSQL_IMAGE``, else ``localhost/gearsync-mysql:sid``."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def _podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
    podman = shutil.which("podman")
    if podman is None:
        raise StackError("podman is not installed: run `make mysql-image` (as root) to set up the MySQL server")
    res = subprocess.run([podman, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and res.returncode != 0:
        raise StackError(f"podman {' '.join(args[:3])} … failed ({res.returncode}): "
                         f"{res.stderr.decode(errors='replace')[-2000:]}")
    return res


def require_image(name: str | None = None) -> str:
    """The image's id; a :class:`StackError` saying what to run when it is not there."""
    name = name or image()
    res = _podman("image", "inspect", "--format", "{{.Id}}", name, check=False)
    if res.returncode != 0:
        raise StackError(f"no MySQL server image {name}: run `make mysql-image` (as root; a few minutes, once)")
    return res.stdout.decode().strip()


def mysql_plugin_dir() -> Path:
    """Where ``make udf-mysql`` puts the library built against MySQL: ``build/mysql``."""
    root = checkout_root()
    if root is None:
        raise StackError("the MySQL test server needs a checkout (its build/mysql), or pass plugin_dir")
    where = root / "build" / "mysql"
    if not (where / LIBRARY).is_file():
        raise StackError(f"no {LIBRARY} in {where}: run `make udf-mysql` first, or pass plugin_dir")
    return where


def _mounts(*paths: Path) -> list[str]:
    """``-v p:p`` for each path not already under another one."""
    out: list[str] = []
    chosen: list[Path] = []
    for p in sorted({Path(p).resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not any(p == c or c in p.parents for c in chosen):
            chosen.append(p)
            out += ["-v", f"{p}:{p}"]
    return out


def build_udf(source_dir: str | os.PathLike[str], build_dir: str | os.PathLike[str], *,
              image_name: str | None = None, werror: bool = False) -> Path:
    """``make -f udf/udf.mk udf`` in a container of the MySQL image: ``gearsync_udf.so`` built
    with its ``mysql_config`` into ``build_dir`` (incrementally); its path."""
    src, out = Path(source_dir).resolve(), Path(build_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    require_image(image_name)
    res = _podman("run", "--rm", "--network", "host", *_mounts(src, out), "-w", str(src), image_name or image(),
                  "make", "-s", "-f", "udf/udf.mk", "udf", f"BUILD={out}", "MYSQL_CONFIG=mysql_config",
                  *(["WERROR=1"] if werror else []), check=False)
    if res.returncode != 0:
        raise StackError(f"building {LIBRARY} against MySQL failed:\n{res.stderr.decode(errors='replace')[-4000:]}")
    return out / LIBRARY


def _cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "gearsync"


def template_datadir(image_name: str | None = None) -> Path:
    """A data dir initialised by this image's mysqld (made once, then reused)."""
    image_id = require_image(image_name)
    done = _cache_dir() / f"mysql-datadir-{image_id[:12]}"
    if (done / "mysql.ibd").is_file():
        return done
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mysql-init-", dir=done.parent))
    try:
        (tmp / "init.sql").write_text(_INIT_SQL)
        res = _podman("run", "--rm", "--network", "host", *_mounts(tmp), image_name or image(),
                      "mysqld", "--no-defaults", "--initialize-insecure", f"--datadir={tmp / 'data'}", "--user=root",
                      f"--init-file={tmp / 'init.sql'}", f"--log-error={tmp / 'init.log'}",
                      "--innodb-use-native-aio=0", check=False)
        if res.returncode != 0 or not (tmp / "data" / "mysql.ibd").is_file():
            log = (tmp / "init.log").read_text(errors="replace") if (tmp / "init.log").exists() else ""
            raise StackError(f"mysqld --initialize failed ({res.returncode}):\n{log[-2000:]}")
        try:
            (tmp / "data").rename(done)
        except OSError:  # another process made it meanwhile
            if not (done / "mysql.ibd").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done


class MySQL(SqlServer):
    """Oracle MySQL's mysqld in a container of :func:`image`; root@127.0.0.1 without password,
    UDFs loaded from ``plugin_dir`` (default ``build/mysql``, made by ``make udf-mysql``)."""

    name = "mysql"
    flavor = "mysql"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        plugin_dir: str | os.PathLike[str] | None = None,
        durable: bool = False,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        udf_config: Mapping[str, str] | None = None,
        image_name: str | None = None,
    ) -> None:
        super().__init__(workdir, port, plugin_dir, durable, extra_args, env, udf_config)
        self.image = image_name or image()
        self._pid: int | None = None
        self._atexit_registered = False

    def default_plugin_dir(self) -> Path:
        return mysql_plugin_dir()

    @property
    def container(self) -> str:
        return f"gearsync-mysql-{self.port}"

    def prepare(self) -> None:
        self._pid = None
        if not self._atexit_registered:  # the container outlives us otherwise (its own session)
            atexit.register(self.kill)
            self._atexit_registered = True
        self.write_udf_config()  # in workdir, mounted at the same path: the env names it inside too
        # mysqld >= 9 loads this component from the plugin dir at every start (and logs an error
        # without it); here the plugin dir is ours, so it gets a link to the image's copy (a
        # path inside the container: dangling on the host).
        for component in _COMPONENTS:
            link = self.plugin_dir / component
            if not link.is_symlink() and not link.exists():
                link.symlink_to(f"{IMAGE_PLUGIN_DIR}/{component}")
        if (self.datadir / "mysql.ibd").is_file():
            return
        shutil.copytree(template_datadir(self.image), self.datadir, symlinks=True)

    def argv(self) -> list[str]:
        podman = shutil.which("podman") or "podman"
        env = [f"--env={k}={v}" for k, v in self.env.items()]
        args = [
            podman, "run", "--rm", "--replace", "--name", self.container, "--network", "host",
            *_mounts(self.workdir, self.plugin_dir), *env, self.image,
            "mysqld", "--no-defaults", f"--datadir={self.datadir}",
            f"--port={self.port}", f"--bind-address={self.host}", f"--socket={self.socket_path}",
            f"--pid-file={self.workdir / 'mysqld.pid'}", f"--log-error={self.log_path}",
            f"--plugin-dir={self.plugin_dir}", "--user=root", "--skip-log-bin",
            "--character-set-server=utf8mb4", "--innodb-buffer-pool-size=128M",
            "--max-connections=300", "--skip-name-resolve",
            # X Protocol would listen on 33060 (a fixed port: two servers would collide);
            # native AIO cannot be set up in this container (InnoDB logs an error, then does without).
            "--mysqlx=OFF", "--innodb-use-native-aio=0",
        ]
        if not self.durable:
            args += ["--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=OFF"]
        return args + self.extra_args

    @property
    def pid(self) -> int | None:
        if not self.running:
            return None
        if self._pid is None:
            res = _podman("inspect", "--format", "{{.State.Pid}}", self.container, check=False)
            pid = int(res.stdout.decode().strip() or 0) if res.returncode == 0 else 0
            if pid <= 0:
                return None
            self._pid = pid
        return self._pid

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        self._pid = None

    def kill(self) -> None:
        super().kill()
        self._pid = None

    def tool_argv(self, tool: str) -> list[str]:
        """``podman exec -i <container> <tool>``: MySQL's own client, in the running container."""
        if not self.running:
            raise StackError(f"{self.name} is not running: its client runs in its container")
        return [shutil.which("podman") or "podman", "exec", "-i", self.container, tool]
