# Two entry points (see README): `make book` and `make test`. Each installs what it needs into
# a local virtual environment (.venv) first; torch is pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.amnlib-installed
# Offline copies of the reference data, when the project's shared folder sits beside the clone.
AMNLIB_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export AMNLIB_DATA_DIR
export MPLBACKEND := Agg

.PHONY: install book test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[book,test]"
	touch $(STAMP)

# The main job: execute every notebook and build the website into _build/html.
book: $(STAMP)
	$(BIN)/jupyter-book build -W --keep-going --path-output . .

# The whole test suite: unit tests, then every notebook executed (nbmake) in fast mode.
test: $(STAMP)
	$(BIN)/ruff check amnlib tests benchmarks
	AMNLIB_FAST=1 $(BIN)/python -m pytest -n 2 --dist loadfile --nbmake --nbmake-timeout=600 tests notebooks

lint: $(STAMP)
	$(BIN)/ruff check amnlib tests benchmarks
	$(BIN)/ruff format --check amnlib tests benchmarks

clean:
	rm -rf _build .jupyter_cache
