"""The binary mysqld loads: exported symbols, linkage, version."""
from __future__ import annotations

import re
import subprocess
import sys

import harness

EXPECTED = {
    f"{name}{suffix}"
    for name in harness.FUNCTIONS
    for suffix in ("", "_init", "_deinit")
} | {f"{name}{suffix}" for name in harness.AGGREGATES for suffix in ("_clear", "_add", "_reset")}
LINKER = {"_init", "_fini", "_edata", "_end", "__bss_start"}


def _registered() -> set:
    """Functions sql/install.sql registers (CREATE [AGGREGATE] FUNCTION ... SONAME)."""
    sql = (harness.ROOT / "sql" / "install.sql").read_text()
    return set(re.findall(r"CREATE\s+(?:AGGREGATE\s+)?FUNCTION\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)",
                          sql, re.I))


def test_exports_exactly_the_sql_functions() -> None:
    """Every function of the harness is exported; anything else exported is an
    SQL function that install.sql registers (nothing but SQL entry points)."""
    out = subprocess.run(["nm", "-D", "--defined-only", str(harness.so_path())],
                         check=True, capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()} - LINKER
    assert EXPECTED <= names
    others = {n for n in names - EXPECTED}
    bases = {re.sub(r"_(init|deinit|clear|add|reset)$", "", n) for n in others}
    assert bases <= _registered(), bases - _registered()
    assert others <= {f"{b}{s}" for b in bases for s in ("", "_init", "_deinit")}


def test_install_sql_registers_every_function() -> None:
    """install.sql registers every function except the classic JSON names, which
    clash with native functions on current servers (ERROR 1585)."""
    classic = {"json_array", "json_object", "json_members", "json_values"}
    assert PARITY - classic <= _registered()
    sql = (harness.ROOT / "sql" / "install.sql").read_text()
    assert re.search(r"CREATE\s+AGGREGATE\s+FUNCTION\s+IF\s+NOT\s+EXISTS\s+gman_sum\s+RETURNS\s+INTEGER",
                     sql, re.I)
    drop = (harness.ROOT / "sql" / "uninstall.sql").read_text()
    for name in PARITY - classic:
        assert re.search(rf"DROP\s+FUNCTION\s+IF\s+EXISTS\s+{name}\s*;", drop, re.I), name


def test_expected_set_is_what_the_brief_names() -> None:
    assert {n for n in EXPECTED if not n.endswith(("_init", "_deinit", "_clear", "_add", "_reset"))} >= PARITY


#: the lib_mysqludf_json + gearman-mysql-udf API and gearsync's own settings functions
PARITY = {
        "json_array", "udf_json_array", "json_object", "udf_json_object",
        "json_members", "udf_json_members", "json_values", "udf_json_values",
        "gman_servers_set", "gman_do", "gman_do_high", "gman_do_low",
        "gman_do_background", "gman_do_high_background", "gman_do_low_background",
        "gman_sum", "gearsync_udf_info", "gearsync_timeout_set", "gearsync_do_timeout_set"}


def test_no_libpython() -> None:
    out = subprocess.run(["ldd", str(harness.so_path())], check=True,
                         capture_output=True, text=True).stdout
    assert "python" not in out.lower()
    assert "libgearman" in out


def test_udf_info_is_package_version() -> None:
    sys.path.insert(0, str(harness.ROOT))
    import gearsync

    assert harness.call_once("gearsync_udf_info") == gearsync.__version__.encode()


def test_udf_info_arity() -> None:
    msg = harness.init_error("gearsync_udf_info", 1)
    assert msg is not None and msg.startswith("gearsync_udf_info")
    assert len(msg) < 80


def test_built_against_server_layout() -> None:
    """sizeof(UDF_ARGS) with attributes is 64 on LP64; the harness cdef agrees."""
    assert harness.ffi.sizeof("UDF_ARGS") == 64
    assert harness.ffi.sizeof("UDF_INIT") == 40
    # a key from an attribute proves the .so reads args->attributes
    assert harness.call_once("udf_json_object", harness.Arg(1, name="k")) == b'{"k":1}'


def test_makefile_fragment_rebuilds_on_source_change(tmp_path) -> None:
    """make -q says up to date right after a build."""
    r = subprocess.run(["make", "-q", "-f", "udf/udf.mk", "udf"], cwd=harness.ROOT)
    assert r.returncode == 0
    assert re.search(r"udf/\S+\.c", open(harness.ROOT / "build/udf/json.d").read())


def _install_udf(plugin, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(harness.ROOT), "install-udf",
                           f"PLUGIN_DIR={plugin}", *extra], capture_output=True, text=True)


def test_make_install_udf_writes_a_locked_cnf_and_never_overwrites_it(tmp_path) -> None:
    plugin = tmp_path / "plugin"
    r = _install_udf(plugin, "GEARMAN_SERVERS=gm1:4731, gm2")
    assert r.returncode == 0, r.stderr
    cnf = plugin / "gearsync_udf.cnf"
    settings = [ln for ln in cnf.read_text().splitlines() if ln and not ln.startswith("#")]
    assert settings == ["servers = gm1:4731, gm2", "lock = on"]
    assert f"wrote {cnf}" in r.stdout
    # the installed library reads it: locked, its servers from the file
    child = harness.run_child("""
        from harness import init_error, Arg
        print(init_error("gman_servers_set", Arg(b"x:1", const=True)))
        """, so=plugin / "gearsync_udf.so")
    assert child.stdout.strip() == "gman_servers_set: locked by gearsync_udf.cnf (lock = on)"
    assert "servers gm1:4731,gm2:4730 from the file" in child.stderr
    # an edited (or an operator's own) file is kept
    cnf.write_text("servers = other:1\n")
    r = _install_udf(plugin)
    assert r.returncode == 0 and f"kept the existing {cnf}" in r.stdout
    assert cnf.read_text() == "servers = other:1\n"
    # the default list is written explicitly
    r = _install_udf(tmp_path / "p2")
    assert "servers = 127.0.0.1:4730" in (tmp_path / "p2" / "gearsync_udf.cnf").read_text()
