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
}
LINKER = {"_init", "_fini", "_edata", "_end", "__bss_start"}


def test_exports_exactly_the_sql_functions() -> None:
    out = subprocess.run(["nm", "-D", "--defined-only", str(harness.so_path())],
                         check=True, capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert names - LINKER == EXPECTED


def test_expected_set_is_what_the_brief_names() -> None:
    assert {n for n in EXPECTED if not n.endswith(("_init", "_deinit"))} == {
        "json_object", "udf_json_object", "gman_servers_set", "gman_do_background",
        "gearsync_udf_info", "gearsync_timeout_set"}


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
