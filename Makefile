# Two commands set everything up on a fresh machine (Python 3.11):
#   make demo   renders examples/seed-sweep.toml on the embedded default (SQLite, in-process,
#               builtin:tiny; no Redis, no GPU)
#   make test   installs the test servers (redis-server, PostgreSQL) and runs the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch. On a GPU machine: make setup TORCH='torch==2.13.0 --index-url <the
# CUDA wheel index for your driver>' (see README, "GPU install").
TORCH  ?= torch==2.13.0
OPEN_CLIP ?= open-clip-torch==3.3.0
# Test files run side by side in this many processes (pytest-xdist); each file stays in one, so
# its module fixtures are built once. Waits scale with it (tests/conftest.py, time_factor).
TEST_JOBS ?= 2

.PHONY: setup demo test services bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	# CLIP's real vocabulary for single-file checkpoints offline; --no-deps: open_clip itself
	# (and its torchvision) is never imported, sdfarm reads only its vocabulary file.
	$(BIN)/python -m pip install -q --no-deps $(OPEN_CLIP)
	touch $@

demo: setup
	$(BIN)/sdfarm render examples/seed-sweep.toml

services:
	bash scripts/services.sh

test: setup services
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) outputs sdfarm.db sdfarm.db-* sdfarm.db.migrate-lock *.egg-info
