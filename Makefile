# gearsync — `make demo` runs the pipeline on a throwaway local stack, `make test` runs the suite.
.PHONY: all setup udf install-udf demo test bench clean containers-setup images test-containers test-systemd \
	mysql-image udf-mysql test-mysql bench-mysql

PYTHON ?= python3
VENV ?= .venv
BUILD ?= build
MYSQL_CONFIG ?= $(shell command -v mysql_config 2>/dev/null || command -v mariadb_config 2>/dev/null || echo mysql_config)
PYTEST_ARGS ?=

all: udf

include udf/udf.mk

setup:
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/setup.sh

# Install the library where the *server* loads UDFs from: SELECT @@plugin_dir (not
# `mysql_config --plugindir`, which names the client plugin dir on Debian), and next to it a
# gearsync_udf.cnf with the job servers (GEARMAN_SERVERS) and lock = on, unless one exists
# (never overwritten).
GEARMAN_SERVERS ?= 127.0.0.1:4730
install-udf: udf
	@dir="$(PLUGIN_DIR)"; \
	if [ -z "$$dir" ]; then dir=$$(mysql -N -B -e 'SELECT @@plugin_dir' 2>/dev/null); fi; \
	if [ -z "$$dir" ]; then echo "install-udf: cannot ask the server for @@plugin_dir; pass PLUGIN_DIR=/path (Debian: /usr/lib/mysql/plugin)" >&2; exit 1; fi; \
	install -d "$$dir" && install -m 0644 $(BUILD)/gearsync_udf.so "$$dir/gearsync_udf.so" && \
	echo "installed $(BUILD)/gearsync_udf.so -> $$dir/gearsync_udf.so" && \
	cnf="$$dir/gearsync_udf.cnf"; \
	if [ -e "$$cnf" ]; then echo "kept the existing $$cnf (not overwritten)"; \
	else printf '%s\n' \
	  '# gearsync_udf.cnf: read by gearsync_udf.so once per mysqld start (written by make install-udf).' \
	  '# Where the server list and settings came from is one line in the server error log.' \
	  'servers = $(GEARMAN_SERVERS)' \
	  '# on: gman_servers_set, gearsync_timeout_set, gearsync_do_timeout_set refuse at run time.' \
	  'lock = on' \
	  '# timeout_ms = 250        # background submits (at most 10000)' \
	  '# do_timeout_ms = 5000    # foreground gman_do* (at most 60000)' \
	  '# secret_file = /etc/mysql/gearsync.secret   # signs gearsync_send jobs; readable by mysqld only' \
	  > "$$cnf.tmp" && chmod 0644 "$$cnf.tmp" && mv "$$cnf.tmp" "$$cnf" && \
	  echo "wrote $$cnf (servers = $(GEARMAN_SERVERS), lock = on)"; fi && \
	echo "now: mysql -uroot < sql/install.sql (and restart mysqld if it had loaded the library)"

# demo/test/bench build the library in a sub-make that runs after setup: on a fresh machine
# mysql_config exists only once setup has installed it.
demo: setup
	@$(MAKE) --no-print-directory udf
	$(VENV)/bin/python -m gearsync.demo

test: setup
	@$(MAKE) --no-print-directory udf
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Benchmarks on their own throwaway stack: `make bench`, `make bench QUICK=1`, `make bench BENCH=drain`.
bench: setup
	@$(MAKE) --no-print-directory udf
	QUICK=$(QUICK) $(VENV)/bin/python bench/run.py $(BENCH)

# Oracle MySQL (README, "Supported servers"): mysqld runs in a Podman container of an image made
# once and cached (scripts/mysql-image.sh, as root: mysql-server from Debian unstable); the
# library is built in that image against its own headers into $(BUILD)/mysql, which the server
# loads. `make test-mysql` runs every test that uses a database server against MySQL.
GEARSYNC_MYSQL_IMAGE ?= localhost/gearsync-mysql:sid
MYSQL_BUILD = $(abspath $(BUILD))/mysql

mysql-image:
	@GEARSYNC_MYSQL_IMAGE=$(GEARSYNC_MYSQL_IMAGE) scripts/mysql-image.sh

udf-mysql: mysql-image
	@mkdir -p $(MYSQL_BUILD)
	@podman run --rm --network host -v $(CURDIR):$(CURDIR) -v $(MYSQL_BUILD):$(MYSQL_BUILD) -w $(CURDIR) \
		$(GEARSYNC_MYSQL_IMAGE) make -s -f udf/udf.mk udf BUILD=$(MYSQL_BUILD) MYSQL_CONFIG=mysql_config \
		$(if $(filter 1,$(WERROR)),WERROR=1)

test-mysql: setup
	@$(MAKE) --no-print-directory udf-mysql
	GEARSYNC_TEST_SERVER=mysql GEARSYNC_MYSQL_IMAGE=$(GEARSYNC_MYSQL_IMAGE) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench-mysql: setup
	@$(MAKE) --no-print-directory udf-mysql
	GEARSYNC_TEST_SERVER=mysql GEARSYNC_MYSQL_IMAGE=$(GEARSYNC_MYSQL_IMAGE) QUICK=$(QUICK) \
		$(VENV)/bin/python bench/run.py $(or $(BENCH),write_cost)

# Containers (README, Containers): images from any Debian bookworm base, built and run with
# rootful Podman; the compose stack's end-to-end tests through pytest-docker. `make test`
# never runs these (tests/containers is collected only when named).
GEARSYNC_BASE_IMAGE ?= localhost/gearsync-base:bookworm
PODMAN_COMPOSE = GEARSYNC_BASE_IMAGE=$(GEARSYNC_BASE_IMAGE) $(VENV)/bin/podman-compose --podman-build-args=--network=host -f containers/compose.yaml

containers-setup: setup
	@VENV=$(VENV) GEARSYNC_BASE_IMAGE=$(GEARSYNC_BASE_IMAGE) scripts/containers-setup.sh

images: containers-setup
	$(PODMAN_COMPOSE) build

test-containers: images
	GEARSYNC_BASE_IMAGE=$(GEARSYNC_BASE_IMAGE) $(VENV)/bin/python -m pytest tests/containers $(PYTEST_ARGS)

# systemd-analyze verify on the example units (installs systemd if it is missing).
test-systemd: setup
	@scripts/containers-setup.sh --systemd-only
	$(VENV)/bin/python -m pytest tests/containers/test_systemd_units.py $(PYTEST_ARGS)

clean:
	rm -rf $(BUILD) .run .pytest_cache
