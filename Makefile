# The two set-up commands: `make demo` and `make test`. Both create .venv on first use.
#
# `make test` runs the suite in .venv (newest NumPy/PyArrow, River and every oracle), and again
# in .venv-flink, which has apache-flink itself and so PyFlink 2.3's pins (numpy < 2.2,
# pyarrow < 17, pandas < 2.3), where flowlearn's core must work too (tests needing River skip
# there); then the Flink engine's tests (marker flink) in .venv-flink (Java 17 on the machine).
# One environment for both keeps the install within a small disk (CI once ran out of space with a
# third), and pip keeps no cache of the wheels for the same reason.
# The JVM pieces come from Maven Central through tools/jars/pom.xml into .jars/ (`make jars`):
# an Apache Kafka broker for the tests where Kafka semantics matter, the Flink Kafka connector, and
# Flink's Parquet format with the Hadoop client classes it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
FLINK := .venv-flink
FLINK_STAMP := $(FLINK)/.installed
FLINK_PINS := "numpy>=1.24,<2.2" "pyarrow>=14,<17" "pandas>=1.5,<2.3"
PYTEST_ARGS ?= -q -n 2 --dist loadfile
JARS_STAMP := .jars/.fetched
# Debian's chromium for the dashboard's browser test (Playwright drives it; never `playwright install`).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# A test that needs the Apache Kafka broker fails instead of skipping when its jars are missing.
export FLOWLEARN_REQUIRE_REAL_KAFKA := 1
export PIP_NO_CACHE_DIR := 1

.PHONY: demo test test-main test-compat test-flink jars fuzz bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,demo,kafka,serve,sql]"
	touch $(STAMP)

$(FLINK_STAMP): pyproject.toml
	test -x $(FLINK)/bin/python || $(PYTHON) -m venv $(FLINK)
	$(FLINK)/bin/python -m pip install -q --upgrade pip
	$(FLINK)/bin/python -m pip install -q $(FLINK_PINS) -e ".[flink,test-core,demo,kafka,serve,sql]"
	touch $(FLINK_STAMP)

$(JARS_STAMP): tools/jars/pom.xml
	mvn -q -B -f tools/jars/pom.xml package -Djars.dir=$(CURDIR)/.jars
	touch $(JARS_STAMP)

jars: $(JARS_STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test,demo,kafka,serve,sql,bench]"
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(VENV)/bin/flowlearn demo

test: test-main test-compat test-flink

test-main: $(STAMP) $(JARS_STAMP) $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

test-compat: $(FLINK_STAMP) $(JARS_STAMP) $(CHROMIUM)
	$(FLINK)/bin/python -m pytest $(PYTEST_ARGS) -m "not slow and not flink"

# One process, so the Flink tests share one JVM and mini-cluster.
test-flink: $(FLINK_STAMP) $(JARS_STAMP)
	$(FLINK)/bin/python -m pytest -q -m flink

# The property-based bad-input tests (marker fuzz) with many more examples and a random seed;
# `make test` runs them too, with a fixed seed and few examples (tests/conftest.py: profiles).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest $(PYTEST_ARGS) -m fuzz

bench: $(BENCH_STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(FLINK) .jars build *.egg-info
