"""Deployment tests: the compose stack (containers/compose.yaml) under Podman, driven by
pytest-docker, and the systemd units of examples/.

Collected only when this directory or a file in it is named on the command line, as `make
test-containers` and `make test-systemd` do: `make test` keeps its local daemons and never
builds an image. A run that cannot work here (no podman, not root, no base image, no
podman-compose) fails with what to run; nothing is skipped.

The stack runs on host networking, so each service gets a free loopback port chosen for this
run (written to an env file that every podman-compose call reads), and the project name is
per run: several runs, and the developers' own MariaDB/Redis/gearmand, do not collide.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from compose_stack import REPO_ROOT, SERVICES, ComposeStack, free_port

HERE = Path(__file__).resolve().parent
COMPOSE_FILE = REPO_ROOT / "containers" / "compose.yaml"
LOCAL_BASE = "localhost/gearsync-base:bookworm"
SETUP_HINT = "run `make test-containers` (scripts/containers-setup.sh prepares this machine, as root)"


def _selected(config: pytest.Config) -> bool:
    """True when an invocation argument names this directory or something inside it."""
    base = Path(config.invocation_params.dir)
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if HERE in Path(collection_path).resolve().parents and not _selected(config):
        return True
    return None


def _check_machine() -> str:
    """The podman-compose to use, or a loud failure saying what to run."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root (the containers run under rootful Podman)")
    if not shutil.which("podman"):
        problems.append("podman is not installed")
    compose = Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin" / "podman-compose"
    if not compose.exists():
        compose = REPO_ROOT / ".venv" / "bin" / "podman-compose"
    if not compose.exists():
        problems.append("podman-compose is not in .venv (pip install -e '.[containers]')")
    try:
        import pytest_docker  # noqa: F401
    except ImportError:
        problems.append("pytest-docker is not installed (pip install -e '.[containers]')")
    base = os.environ.get("GEARSYNC_BASE_IMAGE", LOCAL_BASE)
    if shutil.which("podman") and subprocess.run(["podman", "image", "exists", base]).returncode != 0:
        problems.append(f"the base image {base} is missing")
    if problems:
        pytest.fail(f"cannot run the container tests: {'; '.join(problems)}; {SETUP_HINT}", pytrace=False)
    return str(compose)


@pytest.fixture(scope="session")
def compose_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """This run's settings, in an env file that every podman-compose call reads."""
    ports = set()
    while len(ports) < 4:
        ports.add(free_port())
    db, gearmand, redis_port, metrics = sorted(ports)
    env = {
        "GEARSYNC_DB_PORT": str(db),
        "GEARSYNC_GEARMAND_PORT": str(gearmand),
        "GEARSYNC_REDIS_PORT": str(redis_port),
        "GEARSYNC_METRICS_PORT": str(metrics),
        "GEARSYNC_DB_WORKER_PASSWORD": secrets.token_hex(16),
        "GEARSYNC_BASE_IMAGE": os.environ.get("GEARSYNC_BASE_IMAGE", LOCAL_BASE),
    }
    path = tmp_path_factory.mktemp("compose") / "stack.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path, env


@pytest.fixture(scope="session")
def docker_compose_command(compose_env: tuple[Path, dict[str, str]]) -> str:
    """pytest-docker runs `<this> -f <file> -p <project> <subcommand>`: podman-compose, with
    host networking for image builds and this run's env file."""
    compose = _check_machine()
    return f"{compose} --podman-build-args=--network=host --env-file {compose_env[0]}"


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"gearsync-test-{os.getpid()}"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    # Builds only the images that are missing (`make test-containers` built them already).
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v"]


@pytest.fixture(scope="session")
def stack(docker_services: Any, docker_compose_project_name: str, compose_env: tuple[Path, dict[str, str]],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """The composed pipeline, up and healthy (every service's healthcheck passes)."""
    st = ComposeStack(docker_compose_project_name, compose_env[1])
    started = time.monotonic()
    try:
        docker_services.wait_until_responsive(check=st.all_healthy, timeout=180, pause=1)
    except Exception:
        logs = "\n".join(f"--- {s}\n{st.logs(s)[-3000:]}" for s in SERVICES)
        raise AssertionError(f"the stack did not become healthy in 180 s:\n{logs}") from None
    print(f"\ncompose stack {docker_compose_project_name} healthy in {time.monotonic() - started:.1f} s")
    yield st
    logdir = tmp_path_factory.mktemp("compose-logs")
    for s in SERVICES:
        (logdir / f"{s}.log").write_text(st.logs(s))
    print(f"\ncontainer logs kept in {logdir}")
