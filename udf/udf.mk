# udf/udf.mk -- builds $(BUILD)/gearsync_udf.so, the UDF library mysqld loads.
#
# Included by the top-level Makefile; also usable alone from the repository
# root:  make -f udf/udf.mk udf [WERROR=1] [MYSQL_CONFIG=mariadb_config]
# or from an installed package's data dir (gearsync/_data, which holds udf/ and
# sql/), as `gearsync udf build` does:  make -f udf/udf.mk udf BUILD=/abs/dir
#
# The library is compiled against the *server's* UDF struct layout
# ($(pkgincludedir)/server/mysql_com.h: UDF_ARGS with attributes), which must
# come before Connector/C's headers on the include path.  Only the SQL
# function symbols are exported (-fvisibility=hidden + GS_EXPORT).
#
# UDF_EXTRA_CFLAGS / UDF_EXTRA_LDFLAGS add flags, e.g. a sanitizer build:
#   make -f udf/udf.mk udf BUILD=build/asan \
#        UDF_EXTRA_CFLAGS=-fsanitize=address UDF_EXTRA_LDFLAGS=-fsanitize=address

MYSQL_CONFIG ?= mysql_config
CC ?= cc
BUILD ?= build
# The version compiled into gearsync_udf_info() is gearsync.__version__, read from
# gearsync/__init__.py found relative to this file: udf/../gearsync/ in a checkout,
# gearsync/_data/udf/../../ in an installed package.  VERSION=... on the command line wins
# (`gearsync udf build` passes the running package's).
UDF_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
UDF_VERSION_FILE := $(firstword $(wildcard $(UDF_MK_DIR)/../gearsync/__init__.py $(UDF_MK_DIR)/../../__init__.py))
VERSION := $(if $(UDF_VERSION_FILE),$(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' $(UDF_VERSION_FILE)))

UDF_SRCS := $(sort $(wildcard udf/*.c))
UDF_HDRS := $(wildcard udf/*.h)
UDF_OBJDIR := $(BUILD)/udf
UDF_OBJS := $(patsubst udf/%.c,$(UDF_OBJDIR)/%.o,$(UDF_SRCS))
UDF_SO := $(BUILD)/gearsync_udf.so

# mysql_config is asked only when a compile runs, once per make (the eval memoises it): on a
# fresh machine it is installed by `make setup`, after this file was parsed.  MariaDB keeps
# the server's UDF structs in $(pkgincludedir)/server (libmariadbd-dev); Oracle MySQL's public
# headers carry them: mysql.h includes udf_registration_types.h, which Debian's
# libmysqlclient-dev installs as $(pkgincludedir)/udf_registration_types.h (MySQL 8.0 and
# later; /usr/include/mysql, pkgincludedir, has no server/ there).
UDF_MYSQL_INCLUDES = $(eval UDF_MYSQL_INCLUDES := $(call udf_mysql_includes))$(UDF_MYSQL_INCLUDES)
udf_mysql_includes = $(if $(shell command -v $(MYSQL_CONFIG) 2>/dev/null),\
	$(call udf_server_includes,$(shell $(MYSQL_CONFIG) --variable=pkgincludedir)) $(shell $(MYSQL_CONFIG) --include),\
	$(error $(MYSQL_CONFIG) not found: run `make setup` (Debian: libmariadb-dev libmariadbd-dev), or pass MYSQL_CONFIG=/path/to/mysql_config))
udf_server_includes = $(if $(wildcard $(1)/server/mysql_com.h),-I$(1)/server,\
	$(if $(wildcard $(1)/udf_registration_types.h $(1)/mysql/udf_registration_types.h),,\
	$(error no server UDF headers under '$(1)' ($(MYSQL_CONFIG) --variable=pkgincludedir): install libmariadbd-dev, or for MySQL libmysqlclient-dev (run `make setup`))))
UDF_CPPFLAGS = $(UDF_MYSQL_INCLUDES) -DGEARSYNC_VERSION=\"$(or $(VERSION),$(error no gearsync version: \
	neither gearsync/__init__.py next to $(UDF_MK_DIR)/ nor VERSION=... given))\" -D_GNU_SOURCE
UDF_CFLAGS := -std=gnu11 -O2 -g -fPIC -fvisibility=hidden -Wall -Wextra \
	$(if $(filter 1,$(WERROR)),-Werror) $(UDF_EXTRA_CFLAGS)
UDF_LDFLAGS := -shared -Wl,-z,defs -Wl,--as-needed $(UDF_EXTRA_LDFLAGS)
UDF_LIBS := -lgearman -lpthread

.PHONY: udf udf-testlib udf-clean

udf: $(UDF_SO)

# The cffi unit tests of internal helpers (SHA-256/HMAC, the envelope) load
# a second library: the same objects plus udf/test/gs_test_hooks.c, whose
# exported gs_test_* wrappers reach the hidden helpers.  mysqld never loads it.
UDF_TEST_SO := $(BUILD)/test/gearsync_udf_test.so
UDF_TEST_OBJ := $(UDF_OBJDIR)/test/gs_test_hooks.o

udf-testlib: $(UDF_TEST_SO)

$(UDF_TEST_SO): $(UDF_OBJS) $(UDF_TEST_OBJ)
	@mkdir -p $(@D)
	$(CC) $(UDF_CFLAGS) $(UDF_LDFLAGS) -o $@ $(UDF_OBJS) $(UDF_TEST_OBJ) $(UDF_LIBS)

$(UDF_SO): $(UDF_OBJS)
	@mkdir -p $(@D)
	$(CC) $(UDF_CFLAGS) $(UDF_LDFLAGS) -o $@ $(UDF_OBJS) $(UDF_LIBS)

$(UDF_OBJDIR)/%.o: udf/%.c $(UDF_HDRS) udf/udf.mk
	@mkdir -p $(@D)
	$(CC) $(UDF_CPPFLAGS) $(UDF_CFLAGS) -MMD -MP -c -o $@ $<

# The version string is compiled into info.o.
$(UDF_OBJDIR)/info.o: $(UDF_VERSION_FILE)

udf-clean:
	rm -rf $(UDF_OBJDIR) $(UDF_SO) $(BUILD)/test

-include $(UDF_OBJS:.o=.d) $(UDF_TEST_OBJ:.o=.d)

# ---------------------------------------------------------------- sanitizers
# make udf-asan   ASan+UBSan build of the same sources into build/asan/
#                 (UBSan aborts on the first report).
# make fuzz       the hypothesis fuzz of every UDF (tests/udf/test_fuzz.py) against
#                 the ASan build, FUZZ_EXAMPLES per function (default 5000), plus the
#                 rest of tests/udf under ASan.  The ASan runtime is LD_PRELOADed into
#                 Python; leak checking is off there (Python's own allocations);
#                 tests/udf/test_valgrind.py runs memcheck on the normal build.
ASAN_BUILD ?= $(BUILD)/asan
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_EXAMPLES ?= 5000
ASAN_PRELOAD = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)
ASAN_OPTS = detect_leaks=0:abort_on_error=1:detect_odr_violation=0
ASAN_ENV = LD_PRELOAD="$(ASAN_PRELOAD)" \
	ASAN_OPTIONS=$(ASAN_OPTS) \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	GEARSYNC_UDF_SO=$(abspath $(ASAN_BUILD))/gearsync_udf.so

.PHONY: udf-asan fuzz

udf-asan:
	$(MAKE) -f udf/udf.mk udf udf-testlib BUILD=$(ASAN_BUILD) MYSQL_CONFIG=$(MYSQL_CONFIG) \
		UDF_EXTRA_CFLAGS="$(ASAN_FLAGS)" UDF_EXTRA_LDFLAGS="$(ASAN_FLAGS)"

# pytest captures fd 2, so sanitizer reports also go to .run/asan-fuzz.<pid>.
fuzz: udf-asan
	@mkdir -p .run && rm -f .run/asan-fuzz.*
	$(ASAN_ENV) ASAN_OPTIONS=$(ASAN_OPTS):log_path=$(abspath .run)/asan-fuzz \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(abspath .run)/asan-fuzz \
		GEARSYNC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
		$(or $(wildcard .venv/bin/python),python3) -m pytest -q -p no:cacheprovider tests/udf \
		|| { cat .run/asan-fuzz.* 2>/dev/null; exit 1; }
	@if ls .run/asan-fuzz.* >/dev/null 2>&1; then cat .run/asan-fuzz.*; exit 1; fi

# make udf-stress       the server-side UDF tests with the big concurrency run (16 connections
#                       x STRESS_ROWS rows x STRESS_ROUNDS rounds), then the same load with
#                       UDF-free triggers as a control for mariadbd's own RSS curve.
# make udf-server-asan  the server-side UDF tests with build/asan/gearsync_udf.so loaded into
#                       mariadbd and the ASan runtime LD_PRELOADed; reports go to
#                       .run/asan-mariadbd.<pid> (none = clean).
STRESS_ROWS ?= 5000
STRESS_ROUNDS ?= 8
PYTEST_BIN = $(or $(wildcard .venv/bin/python),python3) -m pytest -p no:cacheprovider

.PHONY: udf-stress udf-server-asan

udf-stress: udf
	GEARSYNC_STRESS_ROWS=$(STRESS_ROWS) GEARSYNC_STRESS_ROUNDS=$(STRESS_ROUNDS) GEARSYNC_STRESS_RSS_BOUND_MIB=96 \
		$(PYTEST_BIN) -q -s tests/test_udf_server.py
	GEARSYNC_STRESS_CONTROL=1 GEARSYNC_STRESS_ROWS=$(STRESS_ROWS) GEARSYNC_STRESS_ROUNDS=$(STRESS_ROUNDS) GEARSYNC_STRESS_RSS_BOUND_MIB=96 \
		$(PYTEST_BIN) -q -s tests/test_udf_server.py -k concurrency

udf-server-asan: udf udf-asan
	rm -f .run/asan-mariadbd.*
	GEARSYNC_SERVER_ASAN=1 $(PYTEST_BIN) -q -s tests/test_udf_server.py
	@if ls .run/asan-mariadbd.* >/dev/null 2>&1; then cat .run/asan-mariadbd.*; exit 1; \
	else echo "udf-server-asan: no ASan/UBSan report from mariadbd"; fi
