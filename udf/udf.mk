# udf/udf.mk -- builds $(BUILD)/gearsync_udf.so, the UDF library mysqld loads.
#
# Included by the top-level Makefile; also usable alone from the repository
# root:  make -f udf/udf.mk udf [WERROR=1] [MYSQL_CONFIG=mariadb_config]
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
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' gearsync/__init__.py)

UDF_SRCS := $(sort $(wildcard udf/*.c))
UDF_HDRS := udf/gearsync_udf.h
UDF_OBJDIR := $(BUILD)/udf
UDF_OBJS := $(patsubst udf/%.c,$(UDF_OBJDIR)/%.o,$(UDF_SRCS))
UDF_SO := $(BUILD)/gearsync_udf.so

UDF_PKGINCLUDEDIR := $(shell $(MYSQL_CONFIG) --variable=pkgincludedir)
UDF_CPPFLAGS := -I$(UDF_PKGINCLUDEDIR)/server $(shell $(MYSQL_CONFIG) --include) \
	-DGEARSYNC_VERSION=\"$(VERSION)\" -D_GNU_SOURCE
UDF_CFLAGS := -std=gnu11 -O2 -g -fPIC -fvisibility=hidden -Wall -Wextra \
	$(if $(filter 1,$(WERROR)),-Werror) $(UDF_EXTRA_CFLAGS)
UDF_LDFLAGS := -shared -Wl,-z,defs -Wl,--as-needed $(UDF_EXTRA_LDFLAGS)
UDF_LIBS := -lgearman -lpthread

.PHONY: udf udf-clean

udf: $(UDF_SO)

$(UDF_SO): $(UDF_OBJS)
	@mkdir -p $(@D)
	$(CC) $(UDF_CFLAGS) $(UDF_LDFLAGS) -o $@ $(UDF_OBJS) $(UDF_LIBS)

$(UDF_OBJDIR)/%.o: udf/%.c $(UDF_HDRS) udf/udf.mk
	@mkdir -p $(@D)
	$(CC) $(UDF_CPPFLAGS) $(UDF_CFLAGS) -MMD -MP -c -o $@ $<

# The version string is compiled into info.o.
$(UDF_OBJDIR)/info.o: gearsync/__init__.py

udf-clean:
	rm -rf $(UDF_OBJDIR) $(UDF_SO)

-include $(UDF_OBJS:.o=.d)
