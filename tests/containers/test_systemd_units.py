"""examples/gearsync-worker.service and gearsync-worker@.service, installed as the README says
into a throwaway root, pass `systemd-analyze verify` without a warning, and two instances of
the template, started with the environment the unit gives them, read their own config and
serve metrics on their own ports."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from compose_stack import REPO_ROOT, free_port, wait_until

EXAMPLES = REPO_ROOT / "examples"
UNITS = ("gearsync-worker.service", "gearsync-worker@.service")


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.fail("systemd-analyze is missing: `make test-systemd` installs it "
                    "(scripts/containers-setup.sh --systemd-only: apt-get install systemd)", pytrace=False)
    return exe


def _service_lines(unit: Path) -> list[tuple[str, str]]:
    section, out = "", []
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            out.append((key, value))
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root laid out by the README's install steps: the venv's `gearsync` at
    /opt/gearsync/bin, the units in /etc/systemd/system, systemd's own units beside them."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "opt/gearsync/bin").mkdir(parents=True)
    shutil.copy2(Path(sys.executable).parent / "gearsync", root / "opt/gearsync/bin/gearsync")
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in UNITS:
        shutil.copy2(EXAMPLES / name, root / "etc/systemd/system" / name)
    (root / "etc/gearsync").mkdir()
    return root


def test_both_units_pass_systemd_analyze_verify_without_a_warning(root: Path) -> None:
    exe = _systemd_analyze()
    res = subprocess.run([exe, "verify", f"--root={root}", "gearsync-worker.service",
                          "gearsync-worker@orders.service", "gearsync-worker@users.service"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr


def test_verify_fails_when_the_install_step_for_the_venv_was_skipped(root: Path) -> None:
    """The check above can fail: without /opt/gearsync/bin/gearsync, verify says so."""
    (root / "opt/gearsync/bin/gearsync").unlink()
    res = subprocess.run([_systemd_analyze(), "verify", f"--root={root}", "gearsync-worker@orders.service"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "/opt/gearsync/bin/gearsync" in res.stderr, res.stderr


def _instance_env(unit: Path, instance: str, root: Path) -> dict[str, str]:
    """The environment systemd gives instance ``instance``: Environment= and EnvironmentFile=
    in order, %i expanded; paths under /etc/gearsync are read from (and point into) ``root``."""
    env: dict[str, str] = {}
    for key, value in _service_lines(unit):
        value = value.replace("%i", instance)
        if key == "Environment":
            for assignment in shlex.split(value):
                k, _, v = assignment.partition("=")
                env[k] = str(root) + v if v.startswith("/etc/gearsync/") else v
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            path = root / value.lstrip("-").lstrip("/")
            if not path.exists():
                assert optional, f"{unit.name}: instance {instance} needs {value}"
                continue
            for line in path.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    k, _, v = line.partition("=")
                    env[k.strip()] = v.strip()
    return env


def test_template_instances_read_their_own_config_and_serve_metrics_on_their_own_port(root: Path) -> None:
    unit = root / "etc/systemd/system/gearsync-worker@.service"
    service = dict(_service_lines(unit))
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/gearsync/bin/gearsync" and argv[1:] == ["worker"]
    procs: dict[str, tuple[subprocess.Popen[bytes], Path, int, int]] = {}
    try:
        for name in ("orders", "users"):
            # Nothing listens on these: each instance logs its own gearmand while retrying.
            gearmand, metrics = free_port(), free_port()
            (root / f"etc/gearsync/{name}.toml").write_text(
                f'[gearman]\nservers = ["127.0.0.1:{gearmand}"]\n\n[redis]\nurl = "redis://127.0.0.1:{free_port()}/0"\n')
            (root / f"etc/gearsync/{name}.env").write_text(f"GEARSYNC_METRICS_PORT={metrics}\n")
            env = {"PATH": os.environ["PATH"], **_instance_env(unit, name, root)}
            assert env["GEARSYNC_CONFIG"] == str(root / f"etc/gearsync/{name}.toml")
            log = root / f"{name}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen([str(root / argv[0].lstrip("/")), *argv[1:]], env=env,
                                        stdout=out, stderr=subprocess.STDOUT)
            procs[name] = (proc, log, gearmand, metrics)
        for name, (proc, log, gearmand, metrics) in procs.items():
            def serves(port: int = metrics) -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                        return b"gearsync_jobs_applied_total" in r.read()
                except OSError:
                    return False
            wait_until(lambda: serves() or proc.poll() is not None, 20, f"instance {name}'s metrics")
            assert proc.poll() is None, log.read_text()
            assert re.search(rf"gearmand 127\.0\.0\.1:{gearmand}\b", log.read_text()), log.read_text()
        assert len({m for _, _, _, m in procs.values()}) == 2
    finally:
        for proc, log, _, _ in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, (proc, log, _, _) in procs.items():
            assert proc.wait(20) == 0, f"instance {name} did not stop cleanly on SIGTERM:\n{log.read_text()}"


def test_an_instance_without_its_env_file_does_not_start(root: Path) -> None:
    """Sharing another instance's metrics port by accident is impossible: NAME.env is required."""
    unit = root / "etc/systemd/system/gearsync-worker@.service"
    with pytest.raises(AssertionError, match="needs /etc/gearsync/orders.env"):
        _instance_env(unit, "orders", root)
    required = [v for k, v in _service_lines(unit) if k == "EnvironmentFile" and not v.startswith("-")]
    assert required == ["/etc/gearsync/%i.env"]
