# Quick start: `make demo` then `make test`. Each target creates .venv and installs
# the package on first use; the stamp file makes later calls skip the install
# until pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel is installed first so the range in pyproject.toml is already
# satisfied and pip does not fetch a CUDA build. Override for a GPU machine,
# e.g. `make TORCH_SPEC="torch==2.5.1" demo`.
TORCH_SPEC ?= torch==2.13.0
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.dlm_ml-installed

.PHONY: install demo test test-slow lint bench clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet "$(TORCH_SPEC)"
	$(VPY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m dlm_ml.cli.demo

# The fast default: everything but the end-to-end runs of the real commands (marked slow).
test: $(STAMP)
	$(VPY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(VPY) -m pytest -q -m slow

# Style and the layer contract (pyproject.toml: [tool.ruff], [tool.importlinter]).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(VPY) benchmarks/stats_speed.py

# What `make demo` wrote, so the next one starts from scratch: its run folders, its synthetic
# cohort and the registration and patch caches. Its MLflow runs stay in outputs/mlflow.
clean-demo:
	rm -rf outputs/logs/demo outputs/data/synthetic_demo_n100_seed42 outputs/cache
