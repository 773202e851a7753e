# Two entry points (see README): `make book` and `make test`. Each installs what it needs into
# a local virtual environment (.venv) first; torch is pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.amnlib-installed
# Offline copies of the reference data, when the project's shared folder sits beside the clone.
AMNLIB_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export AMNLIB_DATA_DIR
# Notebook kernels must keep matplotlib's inline backend, which records every figure as a cell
# output: a headless MPLBACKEND (Agg) from the caller's shell would silently drop them all.
unexport MPLBACKEND

.PHONY: install browser book test lint lab clean assignments

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[book,test,ml]"
	touch $(STAMP)

# Headless Chromium for the rendering checks (Debian package; installed when running as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium could not be installed: browser checks are skipped"

# The main job: execute every notebook and build the website into _build/html, then check it.
book: $(STAMP) browser
	$(BIN)/python tools/paper_map.py  # book/paper_map.md from amnlib.papers and benchmarks/results
	$(BIN)/jupyter-book build -W --keep-going --path-output . .
	$(BIN)/python tools/check_site.py _build/html

# The whole test suite: unit tests, then every notebook executed (nbmake) in fast mode.
test: $(STAMP) browser
	$(BIN)/ruff check amnlib tests benchmarks tools
	AMNLIB_FAST=1 $(BIN)/python -m pytest -n 2 --dist loadfile --nbmake --nbmake-timeout=300 --durations=20 tests $(wildcard notebooks/*.ipynb)

# JupyterLab on the chapters (installed with the book): figures show inline, as on the website.
lab: $(STAMP)
	$(BIN)/jupyter-lab notebooks

# The course kit: per chapter a student notebook, an autograder archive and an instructor
# notebook in _build/assignments/<chapter>/ (otter-grader; see book/instructors.md).
assignments: $(STAMP)
	$(BIN)/python assignments/build.py --out _build/assignments

lint: $(STAMP)
	$(BIN)/ruff check amnlib tests benchmarks tools
	$(BIN)/ruff format --check amnlib tests benchmarks

clean:
	rm -rf _build .jupyter_cache
