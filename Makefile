# Two commands are the whole set-up: `make demo` and `make test`.
# Both create .venv/ on first use: torch (CPU build) first, then egoasl with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.egoasl-installed
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/egoasl demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_metrics.py
	$(BIN)/python bench/bench_nms.py
	$(BIN)/python bench/bench_mq.py
	$(BIN)/python bench/bench_mq_ops.py
	$(BIN)/python bench/bench_nlq.py
	$(BIN)/python bench/bench_loader.py
	$(BIN)/python bench/bench_threads.py

clean:
	rm -rf $(VENV) runs .pytest_cache
