"""``gearsync sql`` / ``gearsync udf``: the shipped scripts, the build's errors naming Debian
packages, the install's file handling, and the unix-socket URL of Debian's root through a
real server's socket."""

from __future__ import annotations

from pathlib import Path

import pytest

import gearsync
from gearsync import cli, udf_library
from gearsync.connections import connect_mysql, parse_mysql_url
from gearsync.testing.stack import Stack

from helpers import REPO_ROOT


def _socket_url(stack: Stack) -> str:
    assert stack.mysql is not None
    return f"mysql://root@localhost/?unix_socket={stack.mysql.socket_path}"


@pytest.mark.parametrize("script", ["install", "uninstall"])
def test_sql_prints_the_shipped_script_byte_for_byte(script: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.main(["sql", script]) == 0
    assert capsysbinary.readouterr().out == (REPO_ROOT / "sql" / f"{script}.sql").read_bytes()


def _build_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(["udf", "build", *args]) == 2
    return capsys.readouterr().err


def test_udf_build_without_mysql_config_names_its_debian_package(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _build_error(capsys, "--build-dir", str(tmp_path), "--mysql-config", str(tmp_path / "mysql_config"))
    assert "mysql_config not found" in err and "apt-get install -y libmariadb-dev libmariadb-dev-compat" in err


def test_udf_build_without_a_compiler_names_build_essential(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    err = _build_error(capsys, "--build-dir", str(tmp_path))
    assert "no-cc not found" in err and "apt-get install -y build-essential" in err


def test_udf_build_without_server_headers_names_libmariadbd_dev(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a mysql_config whose include dir lacks server/mysql_com.h, as with libmariadb-dev alone
    (tmp_path / "include").mkdir()
    fake = tmp_path / "mysql_config"
    fake.write_text(f"#!/bin/sh\necho {tmp_path / 'include'}\n")
    fake.chmod(0o755)
    err = _build_error(capsys, "--build-dir", str(tmp_path / "b"), "--mysql-config", str(fake))
    assert "no server UDF headers" in err and "apt-get install -y libmariadbd-dev" in err


def test_udf_build_takes_oracle_mysqls_header_layout(tmp_path: Path) -> None:
    """Oracle's mysql_config has no pkgincludedir/server: its mysql.h includes
    udf_registration_types.h from pkgincludedir (Debian's libmysqlclient-dev). The real build
    against it runs in the MySQL image (make udf-mysql, make test-mysql)."""
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "udf_registration_types.h").write_text("/* UDF_ARGS, UDF_INIT */\n")
    fake = tmp_path / "mysql_config"
    fake.write_text(f"#!/bin/sh\necho {tmp_path / 'include'}\n")
    fake.chmod(0o755)
    udf_library.check_toolchain(str(fake))  # no UdfError: the headers are found


def test_udf_build_without_libgearman_headers_names_libgearman_dev(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CC", "cc -nostdinc")  # the real compiler, blind to /usr/include
    err = _build_error(capsys, "--build-dir", str(tmp_path))
    assert "libgearman-1.0/gearman.h not found" in err and "apt-get install -y libgearman-dev" in err


def test_udf_build_is_incremental_and_compiles_the_package_version(
        udf_so: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["udf", "build", "--build-dir", str(tmp_path)]) == 0
    library = tmp_path / udf_library.LIBRARY
    assert capsys.readouterr().out.strip() == f"built {library}"
    before = library.stat().st_mtime_ns
    assert udf_library.build(tmp_path) == library and library.stat().st_mtime_ns == before
    assert f"{gearsync.__version__}\0".encode() in library.read_bytes()


def test_udf_install_replaces_the_library_and_never_overwrites_the_cnf(udf_so: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    first = udf_library.install(udf_so, plugin, "gm1, gm2:4731,[::1]")
    assert first.servers == "gm1:4730, gm2:4731, [::1]:4730" and first.library == plugin / "gearsync_udf.so"
    text = first.config.read_text()
    assert "servers = gm1:4730, gm2:4731, [::1]:4730\n" in text and "lock = on\n" in text
    assert first.library.read_bytes() == udf_so.read_bytes()
    assert (first.library.stat().st_mode & 0o777, first.config.stat().st_mode & 0o777) == (0o644, 0o644)
    first.config.write_text("servers = mine:4730\n")
    inode = first.library.stat().st_ino
    again = udf_library.install(udf_so, plugin, "other")
    assert again.servers is None and again.config.read_text() == "servers = mine:4730\n"
    assert again.library.stat().st_ino != inode  # renamed into place, never rewritten under a server
    assert sorted(p.name for p in plugin.iterdir()) == ["gearsync_udf.cnf", "gearsync_udf.so"]


def test_udf_install_rejects_a_bad_server_list_before_touching_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["udf", "install", "--plugin-dir", str(tmp_path / "p"), "--build-dir", str(tmp_path / "b"),
                     "--servers", "gm1:http"])
    assert code == 2 and "port 'http' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "p").exists() and not (tmp_path / "b").exists()


def test_udf_install_without_a_reachable_server_asks_for_plugin_dir(
        udf_so: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"mysql://root@localhost/?unix_socket={tmp_path / 'no.sock'}"
    assert cli.main(["udf", "install", "--build-dir", str(udf_so.parent), "--mysql", url]) == 2
    err = capsys.readouterr().err
    assert "cannot ask the server for @@plugin_dir" in err and "--plugin-dir" in err


def test_default_build_dir_is_a_per_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert udf_library.default_build_dir() == tmp_path / "gearsync" / f"udf-{gearsync.__version__}"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert udf_library.default_build_dir() == tmp_path / "home" / ".cache" / "gearsync" / f"udf-{gearsync.__version__}"


def test_debians_root_url_names_the_socket() -> None:
    kw = parse_mysql_url("mysql://root@localhost/?unix_socket=/run/mysqld/mysqld.sock")
    assert kw == {"host": "localhost", "port": 3306, "user": "root", "password": "",
                  "unix_socket": "/run/mysqld/mysqld.sock"}


@pytest.mark.parametrize("driver", ["pymysql", "mysqlclient"])
def test_the_socket_url_connects_through_a_real_servers_socket(stack: Stack, driver: str) -> None:
    assert stack.mysql is not None
    conn = connect_mysql(_socket_url(stack), driver=driver)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT USER(), @@plugin_dir")
            user, plugin_dir = cur.fetchone()
    finally:
        conn.close()
    # over TCP the same account shows as root@127.0.0.1
    assert user == "root@localhost" and Path(plugin_dir) == stack.mysql.plugin_dir
    assert udf_library.server_plugin_dir(_socket_url(stack)) == stack.mysql.plugin_dir


def test_status_reads_the_outbox_through_the_socket_url(stack: Stack, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEARSYNC_CONFIG", raising=False)
    monkeypatch.chdir(stack.base_dir)  # no ./gearsync.toml
    code = cli.main(["status", "--mysql", _socket_url(stack), "--redis-url", stack.redis_url,
                     "--gearman", stack.gearman_servers])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("outbox: ") and "mysql: ok" in out
