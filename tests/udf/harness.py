"""Call gearsync_udf.so's UDFs from Python exactly as mysqld does (cffi ABI mode).

One cdef mirrors the server's UDF_INIT / UDF_ARGS / Item_result
(``$(mysql_config --variable=pkgincludedir)/server/mysql_com.h``), and
``ffi.dlopen`` loads ``build/gearsync_udf.so``, the very binary mysqld loads.

:class:`Udf` follows ``udf_handler`` of the server:

* ``_init`` sees the values of constant arguments only; non-constant ones are
  NULL pointers in ``args[]`` with ``lengths[i]`` = the item's max length;
  ``attributes`` are the argument names (aliases);
* after ``_init`` every row's values are converted to the ``arg_type`` that
  ``_init`` may have changed (type coercion), string values are exactly
  ``lengths[i]`` bytes with no terminating NUL;
* ``*is_null`` and ``*error`` are reset to 0 before each row, the result buffer
  has 255 bytes, the message buffer MYSQL_ERRMSG_SIZE (512) bytes;
* every buffer stays alive for the whole call sequence, and ``_deinit`` is
  always called after a successful ``_init`` (context manager / close()).
"""
from __future__ import annotations

import decimal
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import cffi

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SO = ROOT / "build" / "gearsync_udf.so"

STRING_RESULT, REAL_RESULT, INT_RESULT, ROW_RESULT, DECIMAL_RESULT, TIME_RESULT = range(6)
MYSQL_ERRMSG_SIZE = 512
RESULT_BUFFER_SIZE = 255

CDEF_TYPES = """
typedef signed char my_bool;  /* char in C; signed so cffi gives ints */
enum Item_result { STRING_RESULT=0, REAL_RESULT, INT_RESULT, ROW_RESULT,
                   DECIMAL_RESULT, TIME_RESULT };
typedef struct st_udf_args {
  unsigned int arg_count;
  enum Item_result *arg_type;
  char **args;
  unsigned long *lengths;
  char *maybe_null;
  const char **attributes;
  unsigned long *attribute_lengths;
  void *extension;
} UDF_ARGS;
typedef struct st_udf_init {
  my_bool maybe_null;
  unsigned int decimals;
  unsigned long max_length;
  char *ptr;
  my_bool const_item;
  void *extension;
} UDF_INIT;
"""

#: SQL name -> return kind; every function also has _init and _deinit.
FUNCTIONS = {
    "json_array": "string",
    "udf_json_array": "string",
    "json_object": "string",
    "udf_json_object": "string",
    "json_members": "string",
    "udf_json_members": "string",
    "json_values": "string",
    "udf_json_values": "string",
    "gman_servers_set": "string",
    "gman_do": "string",
    "gman_do_high": "string",
    "gman_do_low": "string",
    "gman_do_background": "string",
    "gman_do_high_background": "string",
    "gman_do_low_background": "string",
    "gman_sum": "int",
    "gearsync_udf_info": "string",
    "gearsync_timeout_set": "int",
    "gearsync_send": "string",
    "gearsync_send_change": "string",
    "gearsync_send_flush": "int",
    "gearsync_do_timeout_set": "int",
    "gearsync_seq": "int",
}

#: aggregate functions: they also export _clear, _add (and _reset).
AGGREGATES = {"gman_sum"}

_PROTO = {
    "string": "char *{n}(UDF_INIT *, UDF_ARGS *, char *result, unsigned long *length,"
    " char *is_null, char *error);",
    "int": "long long {n}(UDF_INIT *, UDF_ARGS *, char *is_null, char *error);",
    "real": "double {n}(UDF_INIT *, UDF_ARGS *, char *is_null, char *error);",
}


def cdef_source() -> str:
    lines = [CDEF_TYPES]
    for name, kind in FUNCTIONS.items():
        lines.append(f"my_bool {name}_init(UDF_INIT *, UDF_ARGS *, char *message);")
        lines.append(f"void {name}_deinit(UDF_INIT *);")
        lines.append(_PROTO[kind].format(n=name))
        if name in AGGREGATES:
            lines.append(f"void {name}_clear(UDF_INIT *, char *is_null, char *error);")
            lines.append(f"void {name}_add(UDF_INIT *, UDF_ARGS *, char *is_null, char *error);")
            lines.append(f"void {name}_reset(UDF_INIT *, UDF_ARGS *, char *is_null, char *error);")
    return "\n".join(lines)


ffi = cffi.FFI()
ffi.cdef(cdef_source())

#: the gs_test_* hooks of the test library (udf/test/gs_test_hooks.c): the same objects as
#: gearsync_udf.so plus exported wrappers of internal helpers; mysqld never loads it.
TEST_CDEF = """
void gs_test_sha256(const void *msg, size_t n, unsigned char *out);
void gs_test_hmac_sha256(const void *key, size_t klen, const void *msg, size_t n,
                         unsigned char *out);
size_t gs_test_envelope(const char *function, size_t flen, const void *secret, size_t slen,
                        size_t n, const uint64_t *versions, const unsigned char **payloads,
                        const uint32_t *lens, unsigned char *out, size_t cap);
"""
test_ffi = cffi.FFI()
test_ffi.cdef(TEST_CDEF)

_lib: Any = None
_testlib: Any = None


def so_path() -> Path:
    return Path(os.environ.get("GEARSYNC_UDF_SO", str(DEFAULT_SO)))


def load(path: Optional[os.PathLike] = None) -> Any:
    """dlopen the library once per process."""
    global _lib
    if _lib is None:
        _lib = ffi.dlopen(str(path or so_path()))
    return _lib


def testlib_path() -> Path:
    """build/test/gearsync_udf_test.so next to the library under test (ASan: build/asan/test)."""
    return so_path().parent / "test" / "gearsync_udf_test.so"


def load_testlib() -> Any:
    """dlopen the test library once per process."""
    global _testlib
    if _testlib is None:
        _testlib = test_ffi.dlopen(str(testlib_path()))
    return _testlib


class UdfError(Exception):
    """The function set *error (mysqld turns that into a NULL / error)."""


class UdfInitError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Arg:
    """One argument: its value for the first row, SQL type, constness, alias."""

    value: Any
    type: Optional[int] = None  # Item_result; inferred from value when None
    const: bool = False
    name: Optional[bytes] = None  # attribute; defaults to the value's text
    max_length: int = 65535
    maybe_null: bool = True

    def __post_init__(self) -> None:
        if self.type is None:
            self.type = infer_type(self.value)
        if isinstance(self.name, str):
            self.name = self.name.encode()
        if self.name is None:
            self.name = b"NULL" if self.value is None else _text(self.value)


def infer_type(v: Any) -> int:
    if isinstance(v, bool) or isinstance(v, int):
        return INT_RESULT
    if isinstance(v, float):
        return REAL_RESULT
    if isinstance(v, decimal.Decimal):
        return DECIMAL_RESULT
    return STRING_RESULT


def _text(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, float):
        return repr(v).encode()
    return str(v).encode()


def convert(v: Any, to: int) -> Any:
    """Value as mysqld hands it to a UDF whose arg_type is `to`."""
    if v is None:
        return None
    if to == INT_RESULT:
        if isinstance(v, (bytes, str)):
            try:
                v = float(v)
            except ValueError:
                return 0
        if isinstance(v, float):
            if v != v:
                return 0
            v = max(min(v, 9.2233720368547748e18), -9.2233720368547758e18)
        # saturate like the server's val_int()
        return max(min(int(v), 2 ** 63 - 1), -(2 ** 63))
    if to == REAL_RESULT:
        if isinstance(v, (bytes, str)):
            try:
                return float(v)
            except ValueError:
                return 0.0
        return float(v)
    if to == DECIMAL_RESULT:
        return _text(v) if isinstance(v, (bytes, str)) else str(decimal.Decimal(v)).encode()
    return _text(v)


class Udf:
    """One call sequence of one function: _init, rows, _deinit."""

    def __init__(self, name: str, args: Sequence[Any] = (), lib: Any = None) -> None:
        self.lib = lib or load()
        self.name = name
        self.kind = FUNCTIONS[name]
        self.fn = getattr(self.lib, name)
        self.fn_init = getattr(self.lib, name + "_init")
        self.fn_deinit = getattr(self.lib, name + "_deinit")
        self.args = [a if isinstance(a, Arg) else Arg(a) for a in args]
        n = len(self.args)
        self._keep: list = []
        self.initid = ffi.new("UDF_INIT *")
        self.udf_args = ffi.new("UDF_ARGS *")
        self.arg_type = ffi.new("enum Item_result[]", max(n, 1))
        self.argv = ffi.new("char *[]", max(n, 1))
        self.lengths = ffi.new("unsigned long[]", max(n, 1))
        self.maybe_null = ffi.new("char[]", max(n, 1))
        self.attributes = ffi.new("const char *[]", max(n, 1))
        self.attribute_lengths = ffi.new("unsigned long[]", max(n, 1))
        self.message = ffi.new("char[]", MYSQL_ERRMSG_SIZE)
        self.result = ffi.new("char[]", RESULT_BUFFER_SIZE)
        self.length = ffi.new("unsigned long *")
        self.is_null = ffi.new("char *")
        self.error = ffi.new("char *")
        u = self.udf_args
        u.arg_count = n
        u.arg_type = self.arg_type
        u.args = self.argv
        u.lengths = self.lengths
        u.maybe_null = self.maybe_null
        u.attributes = self.attributes
        u.attribute_lengths = self.attribute_lengths
        self.initialized = False

    # -- value marshalling --------------------------------------------------
    def _set(self, i: int, value: Any, typ: int, keep: list, terminate: bool = False) -> None:
        value = convert(value, typ)
        if value is None:
            self.argv[i] = ffi.NULL
            return
        if typ == INT_RESULT:
            p = ffi.new("long long *", value)
            self.argv[i] = ffi.cast("char *", p)
        elif typ == REAL_RESULT:
            p = ffi.new("double *", value)
            self.argv[i] = ffi.cast("char *", p)
        else:
            data = bytes(value)
            # exactly len bytes (no NUL) per row; c_ptr_safe() at init
            p = ffi.new("char[]", len(data) + (1 if terminate else 0) or 1)
            ffi.memmove(p, data, len(data))
            self.argv[i] = p
            self.lengths[i] = len(data)
        keep.append(p)

    def init(self) -> None:
        keep: list = []
        for i, a in enumerate(self.args):
            self.arg_type[i] = a.type
            self.maybe_null[i] = b"\x01" if a.maybe_null else b"\x00"
            attr = ffi.new("char[]", a.name)
            keep.append(attr)
            self.attributes[i] = attr
            self.attribute_lengths[i] = len(a.name)
            self.lengths[i] = a.max_length
            if a.const:
                self._set(i, a.value, a.type, keep, terminate=True)
            else:
                self.argv[i] = ffi.NULL
        self._keep.append(keep)
        self.initid.maybe_null = 1
        self.initid.decimals = 31
        self.initid.max_length = 255
        self.initid.ptr = ffi.NULL
        self.initid.const_item = 0
        if self.fn_init(self.initid, self.udf_args, self.message):
            raise UdfInitError(ffi.string(self.message).decode("utf-8", "replace"))
        self.initialized = True

    def call(self, values: Optional[Sequence[Any]] = None) -> Any:
        """Run one row; values default to the Args' values."""
        assert self.initialized
        if values is None:
            values = [a.value for a in self.args]
        assert len(values) == len(self.args)
        keep: list = []
        for i, (a, v) in enumerate(zip(self.args, values)):
            if a.const:
                v = a.value
            self._set(i, v, self.arg_type[i], keep)
        self._keep[1:] = [keep]  # row buffers live until the next row
        self.is_null[0] = b"\x00"
        self.error[0] = b"\x00"
        if self.kind == "string":
            self.length[0] = RESULT_BUFFER_SIZE
            ret = self.fn(self.initid, self.udf_args, self.result, self.length,
                          self.is_null, self.error)
            if self.error[0] != b"\x00":
                raise UdfError(self.name)
            if self.is_null[0] != b"\x00" or ret == ffi.NULL:
                return None
            return bytes(ffi.buffer(ret, self.length[0]))
        ret = self.fn(self.initid, self.udf_args, self.is_null, self.error)
        if self.error[0] != b"\x00":
            raise UdfError(self.name)
        if self.is_null[0] != b"\x00":
            return None
        return ret

    __call__ = call

    def group(self, rows: Sequence[Optional[Sequence[Any]]]) -> Any:
        """One GROUP of an aggregate as mysqld runs it: _clear, _add per row, result."""
        assert self.initialized and self.name in AGGREGATES
        clear = getattr(self.lib, self.name + "_clear")
        add = getattr(self.lib, self.name + "_add")
        self.is_null[0] = b"\x00"
        self.error[0] = b"\x00"
        clear(self.initid, self.is_null, self.error)
        for values in rows:
            if values is None:
                values = [a.value for a in self.args]
            keep: list = []
            for i, (a, v) in enumerate(zip(self.args, values)):
                self._set(i, a.value if a.const else v, self.arg_type[i], keep)
            self._keep[1:] = [keep]
            add(self.initid, self.udf_args, self.is_null, self.error)
        self.is_null[0] = b"\x00"
        ret = self.fn(self.initid, self.udf_args, self.is_null, self.error)
        if self.error[0] != b"\x00":
            raise UdfError(self.name)
        if self.is_null[0] != b"\x00":
            return None
        return ret

    def close(self) -> None:
        if self.initialized:
            self.initialized = False
            self.fn_deinit(self.initid)

    def __enter__(self) -> "Udf":
        self.init()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def call_once(name: str, *args: Any) -> Any:
    """init, one row, deinit -- what a trigger does for each row."""
    with Udf(name, args) as f:
        return f()


def init_error(name: str, *args: Any) -> Optional[str]:
    """The _init error message, or None if _init succeeded."""
    u = Udf(name, args)
    try:
        u.init()
    except UdfInitError as e:
        return e.message
    u.close()
    return None


def run_child(code: str, so: Optional[os.PathLike] = None, **env: str) -> subprocess.CompletedProcess:
    """Run Python `code` in a fresh process that loads the library (`so`, default the one under
    test) with extra environment: the config file is read once per process, so each config
    under test needs its own."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=os.path.dirname(__file__), capture_output=True, text=True, timeout=60,
        env={**os.environ, "GEARSYNC_UDF_SO": str(so or so_path()), **env})
