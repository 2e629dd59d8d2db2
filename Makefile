# Thin targets over `python -m harness`; the logic lives in tested Python.
# Every target creates the virtual environment and installs the pinned dependencies first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

MATRIX  ?= default
MATRIX_FILE ?=
PORT    ?= 8000
WEB_PORT ?= 8089
OUT     ?=
REPEAT  ?=
SET     ?=
WORKERS ?=
HOST    ?=
DATABASE_URL ?=
SCENARIO ?=
TARGET  ?=
VARIANT ?=
RUN     ?=
TABLE   ?=
RUNS    ?=
FORMAT  ?=
METRIC  ?=
FAIL_ON ?=
MASTER_BIND ?=
MASTER  ?=
BIND    ?=

# WORKERS, HOST, DATABASE_URL and MASTER_BIND count only when given on make's command line: a
# variable of the same name in your shell must not point a run at another database or machine.
cli = $(if $(filter command line,$(origin $(1))),$($(1)))
SETS := $(foreach s,$(SET),--set $(s)) $(if $(call cli,WORKERS),--set locust_workers=$(call cli,WORKERS)) \
	$(if $(MATRIX_FILE),--matrix-file $(MATRIX_FILE))

.PHONY: help docs deps venv bench capacity peer detector-cost query-cost serve worker ui matrix params table compare report test test-fast package-matrix lint fmt package lock clean

help:
	@echo "make bench [MATRIX=default|smoke|...] [OUT=dir] [REPEAT=n] [SET='duration_s=20 streams=32'] [WORKERS=n] [SERVER=uvicorn] [MATRIX_FILE=my.toml]"
	@echo "make bench TARGET=path/to/target.toml [MATRIX=target|target-backends]  your own Django project: each of its streams under the matrix's scenarios"
	@echo "make bench MATRIX=servers|servers-abort|servers-sse|servers-memory  gevent, gthread, sync, uvicorn, daphne, gunicorn-asgi and granian side by side"
	@echo "           [HOST=http://app DATABASE_URL=postgres://...]  run against an app and database started elsewhere"
	@echo "           [MASTER_BIND=10.0.0.2 WORKERS=n]  Locust's workers on other machines: make worker MASTER=10.0.0.2 on each"
	@echo "make capacity [MATRIX=...] [SET='capacity_max=2048 slo_probe_p99_ms=100'] [WORKERS=n] ...  the same options as bench:"
	@echo "               each cell's breaking point under a step load of slow streams (capacity.csv, capacity.png)"
	@echo "make peer [BACKEND=stock] [VARIANT=release] [SCENARIO=peer-slow-read] [SET=...]"
	@echo "               the same slow-read load from slowhttptest and from our slow client: each one's CPU (peer.csv)"
	@echo "make detector-cost [BACKEND=geventpool] [REQUESTS=300] [REPEATS=11]"
	@echo "               what django-stream-release's detector middleware costs per request (detector_cost.csv)"
	@echo "make query-cost [USERS=16] [SECONDS=10] [ROUNDS=8] [SERVER=gevent]"
	@echo "               a view that does not stream: no package, the switch, django-pg-real-pool (query_cost_summary.csv)"
	@echo "make serve [SERVER=gevent] [BACKEND=geventpool, with TARGET= own] [PORT=8000] [SCENARIO=name] [SET='pool_max=8']"
	@echo "make serve ... BIND=10.0.0.1  listen on that address instead (the app and its PostgreSQL), for a private network"
	@echo "make worker MASTER=10.0.0.2[:5557]  a Locust worker for a run started with MASTER_BIND= on another machine"
	@echo "make serve TARGET=path/to/target.toml [BACKEND=own] [PORT=8000]  your own Django project instead, with the accounting and the detector"
	@echo "make ui [SERVER=gevent] [BACKEND=geventpool, with TARGET= own] [PORT=8000] [WEB_PORT=8089] [SCENARIO=name] [SET=...]"
	@echo "               PostgreSQL, the app and Locust's web UI with the database pool panel"
	@echo "make compare [RUNS='base new'] [FORMAT=md] [METRIC=probe_p99_ms] [FAIL_ON='probe_p99_ms>1.2']"
	@echo "               compare runs cell by cell (default: the two newest under results/)"
	@echo "make report [RUN=results/<run>]  rebuild a run's report.html and plots"
	@echo "make test      run the test suite (real PostgreSQL, gunicorn and Locust)"
	@echo "make test-fast the tests that start no server, in under a minute"
	@echo "make package-matrix [PYTHONS='3.12'] [DJANGO='6.0'] [DATABASES='sqlite stock'] [REUSE=1] [JOBS=2] [PYTEST_ARGS='-x']"
	@echo "               django-stream-release's own tests on every Python x Django x database, with nox (noxfile.py)"
	@echo "make lint      ruff check, ruff format --check and mypy --strict on the package (part of make test); make fmt fixes what it can"
	@echo "make deps      install the Debian packages some tests use (PgBouncer, Chromium, slowhttptest, ...)"
	@echo "make package   build django-stream-release's wheel and sdist into dist/"
	@echo "make matrix    list the cells of MATRIX with their parameters"
	@echo "make params    every parameter: its default, unit, limits and meaning"
	@echo "make docs      regenerate docs/commands.md and docs/parameters.md from the code"
	@echo "make table [RUN=results/<run>] [TABLE=docs/backends.md]  a run's findings table (release by backend, servers, capacity, overhead, the switch, query cost)"
	@echo "make clean     remove the virtual environment and caches (results/ is kept)"

# The package (django-stream-release/) is installed editable: benchapp uses it as a user's project would.
PACKAGE := django-stream-release

$(VENV)/.installed: requirements/bench.txt $(PACKAGE)/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: PYTHON=$(PYTHON) is Python %d.%d; this project needs 3.11 or newer: make PYTHON=python3.11 ..." % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e $(PACKAGE)
	@touch $@

venv: $(VENV)/.installed

# The Debian packages some tests use (PgBouncer, Chromium, slowhttptest, ...): apt-get, as
# root or with sudo. Without them make test skips those tests and says which package.
deps:
	$(PYTHON) -m harness.stack.deps

# bench and capacity: the database URL through the environment, not the command line
RUN_ARGS = $(if $(filter-out default,$(MATRIX))$(if $(TARGET),,x),--matrix $(MATRIX)) $(if $(TARGET),--target $(TARGET)) $(if $(OUT),--out $(OUT)) $(if $(REPEAT),--repeat $(REPEAT)) $(SETS) $(if $(call cli,HOST),--host $(call cli,HOST)) \
	$(if $(call cli,MASTER_BIND),--master-bind $(call cli,MASTER_BIND)) $(if $(call cli,SERVER),--server $(call cli,SERVER))
DB_ENV = $(if $(call cli,DATABASE_URL),BENCH_DATABASE_URL='$(call cli,DATABASE_URL)')

bench: venv
	$(DB_ENV) $(PY) -m harness bench $(RUN_ARGS)

capacity: venv
	$(DB_ENV) $(PY) -m harness capacity $(RUN_ARGS)

peer: venv
	$(PY) -m harness peer $(if $(call cli,BACKEND),--backend $(call cli,BACKEND)) $(if $(VARIANT),--variant $(VARIANT)) $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(OUT),--out $(OUT)) $(SETS)

REQUESTS ?=
REPEATS ?=
detector-cost: venv
	$(PY) -m harness detector-cost $(if $(call cli,BACKEND),--backend $(call cli,BACKEND)) $(if $(REQUESTS),--requests $(REQUESTS)) $(if $(REPEATS),--repeats $(REPEATS)) $(if $(OUT),--out $(OUT)) $(SETS)

query-cost: venv
	$(PY) -m harness query-cost $(if $(call cli,USERS),--users $(call cli,USERS)) $(if $(call cli,SECONDS),--seconds $(call cli,SECONDS)) $(if $(call cli,ROUNDS),--rounds $(call cli,ROUNDS)) $(if $(call cli,SERVER),--server $(call cli,SERVER)) $(if $(OUT),--out $(OUT)) $(SETS)

serve: venv
	$(PY) -m harness serve $(if $(call cli,BACKEND),--backend $(call cli,BACKEND)) $(if $(call cli,SERVER),--server $(call cli,SERVER)) --port $(PORT) $(if $(SCENARIO),--scenario $(SCENARIO)) $(SETS) \
	    $(if $(TARGET),--target $(TARGET)) $(if $(BIND),--bind $(BIND))

worker: venv
	@test -n '$(MASTER)' || { echo 'error: MASTER= is missing: give the master'\''s address, e.g. make worker MASTER=10.0.0.2'; exit 2; }
	$(PY) -m harness worker --master $(MASTER)

ui: venv
	$(PY) -m harness ui $(if $(call cli,BACKEND),--backend $(call cli,BACKEND)) $(if $(call cli,SERVER),--server $(call cli,SERVER)) --port $(PORT) --web-port $(WEB_PORT) $(if $(SCENARIO),--scenario $(SCENARIO)) $(SETS) \
	    $(if $(TARGET),--target $(TARGET))

# docs/commands.md and docs/parameters.md, drawn from the code (tests/test_docs.py checks them)
docs: venv
	$(PY) -m harness docs

matrix: venv
	$(PY) -m harness matrix $(if $(filter-out default,$(MATRIX))$(if $(TARGET),,x),--matrix $(MATRIX)) $(if $(TARGET),--target $(TARGET)) $(if $(MATRIX_FILE),--matrix-file $(MATRIX_FILE)) $(if $(call cli,SERVER),--server $(call cli,SERVER))

params: venv
	$(PY) -m harness params $(if $(MATRIX_FILE),--matrix-file $(MATRIX_FILE))

table: venv
	$(PY) -m harness table $(RUN) $(if $(TABLE),--out $(TABLE))

compare: venv
	$(PY) -m harness compare $(RUNS) $(if $(FORMAT),--format $(FORMAT)) $(foreach m,$(METRIC),--metric $(m)) $(foreach f,$(FAIL_ON),--fail-on '$(f)')

report: venv
	$(PY) -m harness report $(RUN)

# Four pytest workers (pytest-xdist), each with its own throwaway PostgreSQL; tests/conftest.py
# keeps each module on one worker, and the modules that write into the checkout on the same one.
# Most tests wait on slow streams rather than compute: on 2 cores, 499 tests took 9 min 44 s
# on three workers (a fresh clone's .ci/run) and 7 min 0 s on four. The 15 slowest steps are
# listed at the end: where the suite's minutes go.
TEST_WORKERS ?= 4
test: venv lint
	$(PY) -m pytest $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadscope) --durations=15 $(PYTEST_ARGS)

# ruff: the lint rules and the format of pyproject.toml (make fmt fixes what can be fixed); mypy:
# the package, strict (its pyproject's [tool.mypy])
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd $(PACKAGE) && ../$(VENV)/bin/mypy

fmt: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The tests that start no server (modules marked pytest.mark.fast): the matrix, the summary, compare, the
# reports, the docs. Under a minute.
test-fast: venv
	$(PY) -m pytest -m fast -q $(PYTEST_ARGS)

# django-stream-release's own suite on every supported Python x Django series x database, one nox
# session per Python and Django (noxfile.py), against a throwaway PostgreSQL; a Python that is
# not installed fails it, naming it (harness/studies/package_matrix.py). About 5 minutes on 2 cores.
PYTHONS   ?=
DJANGO    ?=
DATABASES ?=
REUSE     ?=
JOBS      ?=
PACKAGE_MATRIX_ARGS = $(foreach p,$(PYTHONS),--python $(p)) $(foreach d,$(DJANGO),--django $(d)) \
	$(foreach d,$(DATABASES),--database $(d)) $(if $(REUSE),--reuse) $(if $(JOBS),--jobs $(JOBS)) \
	$(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))
package-matrix: venv
	$(PY) -m harness package-matrix $(strip $(PACKAGE_MATRIX_ARGS))

package: venv
	$(PY) -m build --outdir dist $(PACKAGE)

# Re-pin requirements/<env>.txt from requirements/<env>.in with pip-tools' pip-compile, every
# file's sha256 included, so that an install gets exactly the files that were locked (pip's
# hash-checking mode). The pins already there are kept unless the .in asks otherwise.
# The package matrix's pins (requirements/package-matrix/django-<series>.txt) are compiled the
# same way, each on the oldest Python of its series in noxfile.py (harness/studies/package_matrix.py).
LOCK_ENVS ?= bench pg3
PIP_TOOLS ?= pip-tools==7.6.2
PIP_COMPILE_FLAGS := --quiet --generate-hashes --allow-unsafe --no-strip-extras --no-emit-index-url --no-emit-find-links
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock && \
	  .venv-lock/bin/pip install --quiet --disable-pip-version-check '$(PIP_TOOLS)' || { rm -rf .venv-lock; exit 1; }
	@for env in $(LOCK_ENVS); do \
	  echo "locking requirements/$$env.txt"; \
	  CUSTOM_COMPILE_COMMAND='make lock' .venv-lock/bin/pip-compile $(PIP_COMPILE_FLAGS) \
	    --output-file requirements/$$env.txt requirements/$$env.in || { rm -rf .venv-lock; exit 1; }; \
	done; rm -rf .venv-lock
	$(PYTHON) -m harness.studies.package_matrix lock --pip-tools '$(PIP_TOOLS)' -- $(PIP_COMPILE_FLAGS)

clean:
	rm -rf $(VENV) .venv-* .nox .pytest_cache dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
