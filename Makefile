# Shortcuts only; pyproject.toml is the source of truth. `make demo` and `make test` are
# the README's two commands.
VENV ?= .venv
PY := $(VENV)/bin/python
PACKAGES := schemas projections rewards fraud streams replay persistence reports tools deploy web cli jobs

.PHONY: install demo test fast lint typecheck tools bench clean native FORCE
FORCE:

install: $(VENV)/.installed native

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# The pure core, and the codec's fast path generated from the .avsc files, compiled with mypyc
# (tools/native.py); each used only while current with its sources. `ensure` rebuilds only
# what changed. Without a C compiler the build is skipped and both run as Python.
native: $(VENV)/.installed
	@$(PY) -c "from refstream.tools.native import main; raise SystemExit(main(['ensure']))" \
	  || echo "warning: the compiled core was not built; the core runs as Python"

demo: install
	$(VENV)/bin/refstream demo

# mypy cannot follow setuptools' editable import hook, so it reads the packages through a
# symlink tree that spells the installed names (refstream.schemas -> schemas/ ...). Rebuilt on
# every run, so a tree made before a room was added gets its link.
build/ns/refstream: FORCE
	mkdir -p build/ns/refstream
	for p in $(PACKAGES); do ln -sfn ../../../$$p build/ns/refstream/$$p; done

lint: install
	$(VENV)/bin/ruff check .

typecheck: install build/ns/refstream
	$(VENV)/bin/mypy -p refstream

# Debian's chromium renders the HTML report and the edge's pages in their tests; promtool
# checks the Prometheus config; zbarimg (zbar-tools) decodes the QR codes in screenshots.
# Installed when missing (as root, as on CI); without them those checks skip.
tools:
	@if ! command -v chromium >/dev/null || ! command -v promtool >/dev/null \
	    || ! command -v zbarimg >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium prometheus zbar-tools >/dev/null \
	      || echo "warning: chromium/promtool/zbarimg not installed"; \
	  else echo "warning: chromium/promtool/zbarimg missing; their tests will skip"; fi; fi

# The whole suite: unit, property, integration against a real Kafka broker that the test
# session starts itself (deploy/kafka_launcher.py), failure tests. On TEST_WORKERS pytest-xdist
# workers (each with its own broker): most of the suite's time is spent waiting on brokers,
# workers and paced producers, which two workers overlap even on two cores. A file (or a test
# package sharing a costly fixture, tests/conftest.py) runs on one worker; in collection order,
# so the long conformance and failure packages start first. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: lint typecheck tools
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The fast set for a developer: pure core and unit tests, seconds.
fast: install
	$(VENV)/bin/pytest -m "not integration and not slow and not failure" -q

bench: install
	for b in bench/bench_*.py; do PYTHONPATH=. $(PY) $$b || exit 1; done

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis out
