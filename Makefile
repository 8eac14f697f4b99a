# Two commands on a fresh machine: `make run` (the demo, end to end) and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

export RECS_HOME ?= $(CURDIR)/var
export DAGSTER_HOME ?= $(RECS_HOME)/dagster_home
export OPENBLAS_NUM_THREADS ?= 1

PYTHON ?= python3
UV := $(PYTHON) -m uv
BIN := .venv/bin

DEMO_START ?= 2026-11-01
# A week: every published day (the newest publish.keep_versions) has the clicks its ranker's
# anchors and their lookback read (models.ranker.history_days + two days of anchors).
DEMO_END ?= 2026-11-07
DEMO_DAYS ?= 7
DEMO_USERS ?= 4000
DEMO_EVENTS_PER_DAY ?= 60000

.PHONY: install run generate materialize summary test dev lint format bench clean FORCE

install: .venv/.installed

.venv/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --compile-bytecode --quiet
	@touch $@

# The Dagster instance: SQLite under $(DAGSTER_HOME) by default; Postgres with
# DAGSTER_YAML=deploy/dagster.postgres.yaml (and the DAGSTER_PG_* variables, see docs/deployment.md).
DAGSTER_YAML ?= dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: $(DAGSTER_YAML) FORCE
	@mkdir -p $(DAGSTER_HOME)
	@cmp -s $(DAGSTER_YAML) $@ || cp $(DAGSTER_YAML) $@

FORCE:

## run: generate the demo site's clickstream, materialise its whole graph, print a summary
run: install $(DAGSTER_HOME)/dagster.yaml generate materialize summary

generate: install
	$(BIN)/recs generate --out $(RECS_HOME)/landing/demo --start $(DEMO_START) --days $(DEMO_DAYS) \
		--users $(DEMO_USERS) --events-per-day $(DEMO_EVENTS_PER_DAY) --force

# A publish stopped by the gate is a correct outcome (the served versions stay current):
# `recs gate` then prints why and what is served instead, and exits 0; any other failure fails.
materialize: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster asset materialize -m recs_pipeline.definitions --select 'group:demo' \
		--partition-range $(DEMO_START)...$(DEMO_END) || $(BIN)/recs gate --site demo

summary: install
	$(BIN)/recs summary --site demo

## test: install and run the whole test suite
test: install
	$(BIN)/pytest

## dev: the Dagster UI on http://127.0.0.1:3000
dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check recs_pipeline recs_pipeline_tests benchmarks
	$(BIN)/ruff format --check recs_pipeline recs_pipeline_tests benchmarks
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

format: install
	$(BIN)/ruff check --fix recs_pipeline recs_pipeline_tests benchmarks
	$(BIN)/ruff format recs_pipeline recs_pipeline_tests benchmarks

## bench: the whole graph on a generated 10-million-event site (slow; see docs/benchmarks.md)
bench: install
	$(BIN)/python benchmarks/whole_graph.py

clean:
	rm -rf $(RECS_HOME)

## image: build the container image with buildah and load the definitions in it (root; docs/deployment.md)
.PHONY: image
image: install
	PYTHON=$(PYTHON) bash scripts/build_image.sh
