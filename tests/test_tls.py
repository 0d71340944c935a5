"""TLS between the worker and gearmand on another host. Debian's gearmand takes `--ssl` but is
built without TLS (it reads a TLS hello as a bad packet: measured here), so the way is a TLS
terminator in front of it — stunnel, as a user deploys it. The worker verifies the server's
certificate with the CA it is given and takes jobs over TLS; without TLS, or with the wrong
CA, it gets nothing."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync.gearman import GearmanClient
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import Gearmand, RedisServer, free_port


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it; a second, unrelated CA."""
    d = tmp_path / "pki"
    d.mkdir()
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=gearsync test {ca}",
                 "-keyout", str(d / f"{ca}.key"), "-out", str(d / f"{ca}.pem"))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(d / "server.key"),
             "-out", str(d / "server.csr"))
    (d / "ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext"), "-out", str(d / "server.pem"))
    return {n: d / f for n, f in (("ca", "ca.pem"), ("other", "other-ca.pem"), ("cert", "server.pem"),
                                  ("key", "server.key"))}


@pytest.fixture
def tls_gearmand(tmp_path: Path, pki: dict[str, Path], gearmand: Gearmand) -> Iterator[Gearmand]:
    """stunnel on a port of its own, in front of ``gearmand``: a Gearmand-like host/port."""
    port = free_port()
    conf = tmp_path / "stunnel.conf"
    conf.write_text(f"foreground = yes\npid =\n[gearman]\naccept = 127.0.0.1:{port}\n"
                    f"connect = {gearmand.host}:{gearmand.port}\ncert = {pki['cert']}\nkey = {pki['key']}\n")
    proc = subprocess.Popen([shutil.which("stunnel4") or "stunnel", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), 10, 0.05, "stunnel")
        yield Gearmand(tmp_path / "unused", port=port)
    finally:
        proc.terminate()
        proc.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_the_worker_takes_jobs_over_tls(tls_gearmand: Gearmand, redis_server: RedisServer, pki: dict[str, Path],
                                        tmp_path: Path, stack: Any) -> None:
    g, r = tls_gearmand, redis_server.client()
    env = dict(stack.env(), GEARSYNC_GEARMAN=f"{g.host}:{g.port}", GEARSYNC_REDIS_URL=redis_server.url)
    env.pop("GEARSYNC_MYSQL_URL")
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    with GearmanClient(g.host, g.port, ssl=ctx) as c:
        c.submit_many("syncToRedis", [json.dumps({"id": "t1", "name": "over tls"}).encode()])
    plain = WorkerProcess(env, log_path=tmp_path / "plain.log").start()
    wrong = WorkerProcess(dict(env, GEARSYNC_GEARMAN_TLS="1", GEARSYNC_GEARMAN_CA=str(pki["other"])),
                          log_path=tmp_path / "wrong.log").start()
    try:
        wait_for(lambda: "unreachable" in wrong.output() and "retry" in plain.output() + wrong.output(), 15, 0.1,
                 "both to fail to connect")
        assert not r.exists("t1")
    finally:
        plain.stop()
        wrong.stop()
    assert "SSLCertVerificationError" in wrong.output() or "SSL" in wrong.output()
    good = WorkerProcess(env, ["--gearman-tls", "--gearman-ca", str(pki["ca"])], log_path=tmp_path / "good.log").start()
    try:
        wait_for(lambda: r.get("t1") == b"over tls", 15, 0.05, "the job over TLS")
    finally:
        good.stop()
