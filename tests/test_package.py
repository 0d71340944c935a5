"""The package works outside the repository.

A wheel is built from this checkout the way ``python -m build`` does it (an sdist, then the
wheel from the unpacked sdist, through setuptools' PEP 517 hooks, offline), installed into a
fresh venv in a temporary directory, and run from an empty directory with a clean environment:
``gearsync --version``, ``udf build``, ``udf install``, ``sql install`` into a throwaway MariaDB
that the *installed* ``gearsync.testing`` started, a ``gearsync worker``, and INSERT → GET.
Every gearsync process runs under strace, and no file of the checkout may be opened or
executed by any of them (nor may one chdir into it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from importlib.metadata import distribution
from pathlib import Path, PurePath
from typing import Any, Iterator

import pymysql
import pytest
import redis
from packaging.requirements import Requirement

import gearsync
from gearsync.testing.processes import wait_for

from helpers import REPO_ROOT

REPO = REPO_ROOT.resolve()
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: What a build copies into gearsync/_data (setup.py's DATA).
SHIPPED = ("sql/*.sql", "udf/*.c", "udf/*.h", "udf/udf.mk")
#: Run by the installed interpreter: a throwaway stack from the installed gearsync.testing.
STACK_SCRIPT = """
import json, sys
from gearsync.testing.stack import Stack
stack = Stack(base_dir=sys.argv[1], plugin_dir=sys.argv[2]).start()
try:
    print(json.dumps({"gearmand": stack.gearman_servers, "redis": stack.redis_url,
                      "port": stack.mysql.port, "socket": str(stack.mysql.socket_path),
                      "plugin_dir": str(stack.mysql.plugin_dir),
                      "modules": sorted(m.__file__ for m in list(sys.modules.values())
                                        if getattr(m, "__file__", None))}), flush=True)
    sys.stdin.read()
finally:
    stack.stop()
"""


def _pep517(hook: str, source: Path, out: Path) -> Path:
    """Call setuptools' PEP 517 ``hook`` in ``source`` (as ``python -m build --no-isolation``)."""
    res = subprocess.run([sys.executable, "-c", f"from setuptools import build_meta as b; print(b.{hook}({str(out)!r}))"],
                         cwd=source, capture_output=True, text=True, env={"PATH": SYSTEM_PATH, "HOME": str(out)})
    assert res.returncode == 0, f"{hook} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return out / res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist of a copy of the checkout (as a clone has it), then the wheel from that sdist."""
    base = tmp_path_factory.mktemp("wheel")
    clone = base / "clone"
    shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", ".run", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "_data"))
    sdist = _pep517("build_sdist", clone, base)
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 and distributions' security updates
            tar.extraction_filter = tarfile.data_filter
        tar.extractall(base / "unpacked")
    (unpacked,) = (base / "unpacked").iterdir()
    return _pep517("build_wheel", unpacked, base)


def _dependencies(whl: Path) -> list[Any]:
    """The installed distributions that the wheel's requirements need, transitively."""
    with zipfile.ZipFile(whl) as z:
        meta = Parser().parsestr(z.read(f"gearsync-{gearsync.__version__}.dist-info/METADATA").decode())
    todo, found = list(meta.get_all("Requires-Dist") or []), {}
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.name.lower() not in found:
            found[req.name.lower()] = dist = distribution(req.name)
            todo += dist.requires or []
    return list(found.values())


class Installed:
    """A venv outside the checkout holding the wheel and its dependencies, and a way to run
    its commands from an empty directory with a clean environment, under strace."""

    def __init__(self, root: Path, whl: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.venv)], check=True)
        self.python = self.venv / "bin" / "python"
        subprocess.run([sys.executable, "-m", "pip", "--python", str(self.python), "install", "-q",
                        "--no-index", "--no-deps", str(whl)], check=True, env={"PATH": SYSTEM_PATH})
        purelib = Path(subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                      capture_output=True, text=True, check=True).stdout.strip())
        for dist in _dependencies(whl):  # copied as pip would have installed them: files and dist-info
            for f in dist.files or []:
                if PurePath(f).parts[0] != ".." and "__pycache__" not in PurePath(f).parts:
                    (purelib / f).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(Path(str(dist.locate_file(f))), purelib / f)
        self.cwd = root / "empty"
        self.home = root / "home"
        self.traces = root / "traces"
        for d in (self.cwd, self.home, self.traces):
            d.mkdir()
        self.env = {"PATH": f"{self.venv / 'bin'}:{SYSTEM_PATH}", "HOME": str(self.home), "LANG": "C.UTF-8"}
        self._n = 0

    def traced(self, argv: list[str], follow: bool = True) -> list[str]:
        self._n += 1
        log = self.traces / f"{self._n}-{Path(argv[0]).name}-{argv[1] if len(argv) > 1 else ''}.strace"
        follow_args = ["-f", "--seccomp-bpf"] if follow else []
        return ["strace", *follow_args, "-qq", "-e", "trace=open,openat,openat2,execve,chdir", "-o", str(log), *argv]

    def gearsync(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
                 ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.traced([str(self.venv / "bin" / "gearsync"), *args]), cwd=self.cwd,
                              input=stdin, capture_output=True, env={**self.env, **(env or {})}, timeout=300)

    def seen(self, call: str, prefix: str) -> bool:
        """Whether a traced process succeeded in ``call`` (open, openat, chdir, execve) on a path
        starting with ``prefix`` (the tracing's own positive control)."""
        pattern = re.compile(rf'\b{call}\((?:[A-Z_]+, )?"{re.escape(prefix)}[^"]*"[^)]*\)\s+= \d')
        return any(pattern.search(log.read_text(errors="replace")) for log in self.traces.iterdir())

    def checkout_files_touched(self) -> list[str]:
        """Every path under the checkout that a traced process opened, executed or entered."""
        path = re.compile(r'^(?:\d+\s+)?(?:open|openat|openat2|execve|chdir)\((?:[A-Z_]+, |\d+, )?"([^"]*)"')
        touched = []
        for log in sorted(self.traces.iterdir()):
            for line in log.read_text(errors="replace").splitlines():
                m = path.match(line)
                if m and (m.group(1) == str(REPO) or m.group(1).startswith(f"{REPO}/")):
                    touched.append(f"{log.name}: {line}")
        return touched


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if not shutil.which("strace"):
        pytest.fail("strace is missing: run `make setup`")
    return Installed(tmp_path_factory.mktemp("outside"), wheel)


@pytest.fixture(scope="session")
def built_udf(installed: Installed) -> subprocess.CompletedProcess[bytes]:
    """``gearsync udf build`` into its default directory (under the clean HOME's cache)."""
    res = installed.gearsync("udf", "build")
    assert res.returncode == 0, res.stderr.decode()
    return res


@pytest.fixture
def installed_stack(installed: Installed, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """MariaDB (plugin dir: an empty directory), gearmand and Redis started by the installed
    gearsync.testing, run by the venv's interpreter (traced without its daemons)."""
    (tmp_path / "plugin").mkdir()
    with open(tmp_path / "stack.err", "wb") as err:
        proc = subprocess.Popen(installed.traced([str(installed.python), "-c", STACK_SCRIPT, str(tmp_path / "stack"),
                                                  str(tmp_path / "plugin")], follow=False),
                                cwd=installed.cwd, env=installed.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        pytest.fail(f"the installed gearsync.testing did not start a stack:\n{(tmp_path / 'stack.err').read_text()[-3000:]}")
    try:
        yield json.loads(line)
    finally:
        proc.stdin.close()
        proc.wait(60)


def test_the_wheel_ships_the_sql_scripts_and_the_udf_sources(wheel: Path) -> None:
    expected = {f"gearsync/_data/{p.relative_to(REPO)}": p.read_bytes()
                for pattern in SHIPPED for p in REPO.glob(pattern)}
    with zipfile.ZipFile(wheel) as z:
        shipped = {n: z.read(n) for n in z.namelist() if n.startswith("gearsync/_data/")}
        names = set(z.namelist())
    assert "gearsync/_data/sql/install.sql" in expected and "gearsync/_data/udf/udf.mk" in expected
    assert shipped == expected
    assert {"gearsync/py.typed", "gearsync/versioned.lua", "gearsync/testing/stack.py"} <= names


def test_the_installed_package_syncs_an_insert_to_redis_without_the_checkout(
        installed: Installed, built_udf: subprocess.CompletedProcess[bytes],
        installed_stack: dict[str, Any], tmp_path: Path) -> None:
    st = installed_stack
    # the interpreter of the venv sees the venv's gearsync, and nothing of the checkout
    probe = subprocess.run(
        installed.traced([str(installed.python), "-c", "import gearsync, gearsync.resources as r, json, sys; "
                          "print(json.dumps([gearsync.__file__, str(r.data_dir()), sys.path]))"]),
        cwd=installed.cwd, env=installed.env, capture_output=True, text=True, check=True)
    module, data, path = json.loads(probe.stdout)
    assert Path(module).is_relative_to(installed.venv) and Path(data) == Path(module).parent / "_data"
    assert not [p for p in path if p and Path(p).resolve().is_relative_to(REPO)]
    assert not [m for m in st["modules"] if Path(m).resolve().is_relative_to(REPO)]

    version = installed.gearsync("--version")
    assert version.stdout.decode().strip() == f"gearsync {gearsync.__version__}"

    library = installed.home / ".cache" / "gearsync" / f"udf-{gearsync.__version__}" / "gearsync_udf.so"
    assert built_udf.stdout.decode().strip() == f"built {library}" and library.is_file()

    plugin_dir = Path(st["plugin_dir"])
    res = installed.gearsync("udf", "install", "--plugin-dir", str(plugin_dir), "--servers", st["gearmand"])
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().splitlines()[:2] == [
        f"installed {plugin_dir / 'gearsync_udf.so'}",
        f"wrote {plugin_dir / 'gearsync_udf.cnf'} (servers = {st['gearmand']}, lock = on)"]
    assert (plugin_dir / "gearsync_udf.so").read_bytes() == library.read_bytes()
    assert f"servers = {st['gearmand']}\n" in (plugin_dir / "gearsync_udf.cnf").read_text()

    script = installed.gearsync("sql", "install")
    assert script.returncode == 0 and script.stdout == (REPO / "sql" / "install.sql").read_bytes()
    client = subprocess.run(["mariadb", "--no-defaults", "-S", st["socket"], "-uroot"], input=script.stdout,
                            capture_output=True, env=installed.env)
    assert client.returncode == 0, client.stderr.decode()

    socket_url = f"mysql://root@localhost/?unix_socket={st['socket']}"
    db = pymysql.connect(unix_socket=st["socket"], user="root", autocommit=True)
    r = redis.Redis.from_url(st["redis"])
    with db.cursor() as cur:
        cur.execute("SELECT gearsync_udf_info()")
        assert cur.fetchone() == (gearsync.__version__.encode(),)
        try:  # a library without `lock` lets install.sql's own gman_servers_set win over the cnf
            cur.execute("SELECT gman_servers_set(%s)", (st["gearmand"],))
        except pymysql.MySQLError as e:  # with it, the cnf that udf install wrote is in force
            assert "locked by gearsync_udf.cnf" in str(e)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            installed.traced([str(installed.venv / "bin" / "gearsync"), "worker"]), cwd=installed.cwd,
            env={**installed.env, "GEARSYNC_GEARMAN": st["gearmand"], "GEARSYNC_REDIS_URL": st["redis"],
                 "GEARSYNC_MYSQL_URL": socket_url, "GEARSYNC_LOG_LEVEL": "INFO"},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with db.cursor() as cur:
            cur.execute("INSERT INTO test.test VALUES (1, 'from the wheel')")
            cur.execute("INSERT INTO test.test_safe VALUES (7, 'safe mode through the socket')")
        wait_for(lambda: r.get("1") == b"from the wheel", 20, 0.05, "GET 1 from the installed worker")
        wait_for(lambda: r.get("test_safe:7") == b"safe mode through the socket", 20, 0.05, "GET test_safe:7")

        # install again, the plugin dir asked through the socket URL: the loaded library is
        # replaced by a rename (the server keeps working), the cnf is kept
        inode = (plugin_dir / "gearsync_udf.so").stat().st_ino
        res = installed.gearsync("udf", "install", "--mysql", socket_url)
        assert res.returncode == 0, res.stderr.decode()
        assert f"kept the existing {plugin_dir / 'gearsync_udf.cnf'} (not overwritten)" in res.stdout.decode()
        assert (plugin_dir / "gearsync_udf.so").stat().st_ino != inode
        with db.cursor() as cur:
            cur.execute("INSERT INTO test.test VALUES (2, 'after the reinstall')")
        wait_for(lambda: r.get("2") == b"after the reinstall", 20, 0.05, "GET 2 after the reinstall")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        db.close()
    assert worker.returncode == 0, log.read_text()
    # what the trace shows: the venv's modules imported, the shipped script read, make run in _data
    assert installed.seen("openat", f"{Path(module).parent}/__pycache__/worker.cpython")
    assert installed.seen("openat", f"{data}/sql/install.sql") and installed.seen("chdir", data)
    assert installed.checkout_files_touched() == []


def test_the_demo_runs_from_the_installed_package(installed: Installed,
                                                  built_udf: subprocess.CompletedProcess[bytes]) -> None:
    res = subprocess.run([str(installed.python), "-m", "gearsync.demo"], cwd=installed.cwd, env=installed.env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"(UDFs from {installed.home / '.cache' / 'gearsync' / f'udf-{gearsync.__version__}'})" in res.stdout
    assert "gearsync demo: OK" in res.stdout
