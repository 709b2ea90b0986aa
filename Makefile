# pbc-evaluation: every set-up step lives here so that two commands do everything.
#   make report   build .venv from the lock (if missing) and run the pipeline on the embedded sample
#   make test     build .venv from the lock (if missing) and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/sample.yaml
PYTEST_ARGS ?=
# tests in parallel (pytest-xdist): one worker per core, at most 4 (each may run the pipeline with its own
# kernels); modules stay whole on one worker (loadscope) so module fixtures and each notebook's nbval cells are
# not split. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= auto
XDIST_ARGS = -n $(TEST_WORKERS) --maxprocesses 4 --dist loadscope
VERIFY_ARGS ?=

.PHONY: help venv venv-spark report report-events test lint docs test-fast lab lock sample sample-events national expected clean-reports bench simulate-benchmark simulate-evaluation simulate-attribution simulate-completion verify

help:
	@echo "make report   run the full pipeline on the embedded sample (reports/latest/)"
	@echo "make test     lint (ruff, mypy) and run the whole test suite (unit, notebook, back tests)"
	@echo "make docs     regenerate docs/settings.md from the stages' Params (every setting, default, rule)"
	@echo "make lint     ruff (pycodestyle, pyflakes, import order, numpy docstrings) and mypy on the package"
	@echo "make verify RUN=reports/<run_id> [VERIFY_ARGS=--allow-dirty]  check a published run's files, re-run it, compare (auditors)"
	@echo "make lab      open JupyterLab on notebooks/ with the project's kernel"
	@echo "make lock     re-resolve requirements.lock and requirements-spark.lock from pyproject.toml (needs network)"
	@echo "make venv-spark  add the spark extra (PySpark, from requirements-spark.lock) to .venv; needs Java to run"
	@echo "make sample   regenerate data/sample/ from the synthetic generator"
	@echo "make sample-events  the sample as event-level extracts (data/sample-events/), for pbc ingest"
	@echo "make national a synthetic nation (data/national/): 6,500 practices in ~100 commissioners, each with its own truth"
	@echo "make report-events  the pipeline from those extracts: ingest first, then every notebook and the report"
	@echo "make expected regenerate tests/expected/ back-test tables (review the diff!)"
	@echo "make bench    time synth, loading and benchmarking at national size, the ingest of 40M outpatient events (DuckDB,"
	@echo "              Spark, pandas) and the national run of every commissioner of a synthetic nation (about an hour)"
	@echo "              and the whole pipeline per stage (time, peak memory, scaling) at 60, 400 and 1,500 practices"
	@echo "make simulate-benchmark  flag rates of benchmarking over 20 synthetic PCTs"
	@echo "make simulate-evaluation bias and coverage of ITS, TWFE and Callaway-Sant'Anna over 100 synthetic PCTs"
	@echo "make simulate-attribution savings attribution over 100 PCTs of 60 practices and 50 of 400 (about 25 min)"
	@echo "make simulate-completion  coverage of the data lag's completion error over 30 PCTs (about 2 min)"

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pbc-evaluation)" >/dev/null
	@touch $(STAMP)

# the ingest on Spark (engine: spark): PySpark from its own hashed lock, whose every other pin is requirements.lock's
SPARK_STAMP := $(VENV)/.installed-spark

venv-spark: $(SPARK_STAMP)

$(SPARK_STAMP): $(STAMP) requirements-spark.lock
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-spark.lock
	@touch $(SPARK_STAMP)

report: $(STAMP)
	$(BIN)/pbc run --config $(CONFIG)

test: lint
	JUPYTER_PREFER_ENV_PATH=1 MPLBACKEND=Agg $(BIN)/python -m pytest $(XDIST_ARGS) $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/python -c "from pbc_analysis.pipeline.derive import settings_markdown; open('docs/settings.md', 'w', encoding='utf-8').write(settings_markdown())"

lint: $(STAMP)
	$(BIN)/ruff check pbc_analysis tests scripts
	$(BIN)/mypy

verify: $(STAMP)
	@test -n "$(RUN)" || { echo "usage: make verify RUN=path/to/reports/<run_id>"; exit 2; }
	$(BIN)/pbc verify "$(RUN)" $(VERIFY_ARGS)

test-fast: $(STAMP)
	JUPYTER_PREFER_ENV_PATH=1 MPLBACKEND=Agg $(BIN)/python -m pytest $(XDIST_ARGS) -m "not slow" tests $(PYTEST_ARGS)

lab: $(STAMP)
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab notebooks/

lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra test --generate-hashes \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
	$(PYTHON) -m uv pip compile pyproject.toml --extra test --extra spark --constraint requirements.lock --generate-hashes \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements-spark.lock

sample: $(STAMP)
	$(BIN)/pbc synth --seed 20070401 --practices 60 --months 60 --start 2003-04 --out data/sample

# the sample as event-level extracts (data/sample-events/extracts/, not in git: about 25 MB), for pbc ingest
sample-events: $(STAMP)
	$(BIN)/pbc synth --seed 20070401 --practices 60 --months 60 --start 2003-04 --events --out data/sample-events

# a synthetic nation (data/national/, not in git: about 200 MB, 35 s): 6,500 practices split into commissioners of
# 30 to 200 practices, each a synthetic PCT with its own seed, codes, timing and effects (national_truth.json);
# NATIONAL_ARGS=--events adds the extracts of every commissioner (data/national/extracts/, for pbc ingest)
NATIONAL_ARGS ?=
national: $(STAMP)
	$(BIN)/pbc synth --national --seed 20070401 --practices 6500 --months 60 --start 2003-04 --out data/national $(NATIONAL_ARGS)

# the whole pipeline from the extracts: ingest (first stage of the run), notebooks, report
report-events: sample-events
	$(BIN)/pbc run --config configs/sample_events.yaml

expected: $(STAMP)
	$(BIN)/python scripts/make_expected.py

bench: $(STAMP)
	$(BIN)/python scripts/benchmark.py
	$(BIN)/python scripts/benchmark_ingest.py
	$(BIN)/python scripts/benchmark_national.py
	$(BIN)/python scripts/benchmark_pipeline.py

simulate-benchmark: $(STAMP)
	$(BIN)/python scripts/simulate_benchmark.py --seeds 20

simulate-evaluation: $(STAMP)
	$(BIN)/python scripts/simulate_evaluation.py --seeds 100 --scenario sample
	$(BIN)/python scripts/simulate_evaluation.py --seeds 100 --scenario heterogeneous

simulate-attribution: $(STAMP)
	$(BIN)/python scripts/simulate_attribution.py --seeds 100
	$(BIN)/python scripts/simulate_attribution.py --seeds 50 --practices 400 --no-leak

simulate-completion: $(STAMP)
	$(BIN)/python scripts/simulate_completion.py --seeds 30

clean-reports:
	rm -rf reports/*/ reports/latest
