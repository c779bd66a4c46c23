# Two commands on a fresh machine:  `make lab` (the lessons) and `make test` (the whole test suite).
# Each creates .venv, installs what it needs and this project, and provisions the data first.
# Any step may be interrupted or fail (venv, pip, data): the same command, run again, finishes the job.
# `make help` lists every target.
SELF   := $(lastword $(MAKEFILE_LIST))
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
# The exact versions CI tested; `CONSTRAINTS=` installs whatever the ranges of requirements.txt resolve to.
CONSTRAINTS ?= constraints/ci.txt
PIP_FLAGS ?=
PIP    := $(BIN)/python -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) $(PIP_FLAGS)
NBVAL  := $(BIN)/pytest -n auto --dist loadfile --no-loadscope-reorder
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
# The demo class's hub (`make hub`): its state, the shared read-only data folder, the port learners open,
# and its proxy, installed from hub/package-lock.json into .node/ (git-ignored).
HUB_DIR  ?= build/hub
HUB_DATA ?= build/class-data
HUB_PORT ?= 8000
PROXY    := .node/node_modules/.bin/configurable-http-proxy
# A usable venv: its own prefix, Python 3.11+, a pip that runs. Anything less is made again.
VENV_OK := $(BIN)/python -c 'import sys; sys.exit(sys.prefix == sys.base_prefix or sys.version_info < (3, 11))' 2>/dev/null \
	&& $(BIN)/python -m pip --version >/dev/null 2>&1

.PHONY: help lab lessons test test-portability test-matrix lint test-latest test-colab test-cuda data venv constraints \
	sync export slides students site classroom grade clean-data hub hub-stop clean-hub proxy
.DELETE_ON_ERROR:

lab: data            ## open the lessons in JupyterLab, with this venv's Python as the kernel
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/

help:                ## list the targets and what each does
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-17s %s\n", $$1, $$2}' $(SELF)

lessons: data        ## run every lesson top to bottom without a browser (results in build/executed/)
	$(BIN)/jupyter nbconvert --to notebook --execute --output-dir build/executed notebooks/*.ipynb

test: $(DEV) data $(PROXY)  ## unit tests, classroom, browser and hub tests, every notebook under nbval, on all cores
	OMP_NUM_THREADS=1 $(NBVAL)

test-portability: $(DEV) data  ## the notebooks under nbval as `pytest notebooks/` runs them: torch's own thread count, AVX2 kernels
	env -u OMP_NUM_THREADS ATEN_CPU_CAPABILITY=avx2 $(BIN)/pytest -p no:xdist notebooks

test-matrix: $(DEV) data  ## the notebooks across thread counts, CPU kernels, MPLBACKEND=Agg (and CUDA), as a grid
	$(BIN)/python -m tools.matrix

lint: $(DEV)         ## ruff: lint and format check of the code, notebooks included
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-latest:         ## the suite on the newest releases the ranges allow (own venv .venv-latest, re-resolved each run)
	rm -f .venv-latest/.installed .venv-latest/.installed-dev
	$(MAKE) -f $(SELF) test VENV=.venv-latest CONSTRAINTS= PIP_FLAGS="--upgrade --upgrade-strategy eager"

test-colab:          ## the suite on Colab's library versions, constraints/colab.txt (own venv .venv-colab)
	$(MAKE) -f $(SELF) test VENV=.venv-colab CONSTRAINTS=constraints/colab.txt

test-cuda: $(DEV) data  ## the notebooks under nbval on a CUDA GPU; fails if torch sees none
	$(BIN)/python -c 'import sys, torch; sys.exit(None if torch.cuda.is_available() else "torch sees no CUDA device: this target needs a CUDA build of torch and a GPU")'
	$(NBVAL) notebooks

constraints:         ## record what .venv holds as constraints/ci.txt (to re-pin: make test-latest, then make constraints VENV=.venv-latest)
	@test -f $(DEV) || { echo "$(VENV) is not fully installed: run make test (or make test-latest) first" >&2; exit 1; }
	{ echo "# The exact versions CI tested: make test and .ci/run install with -c constraints/ci.txt."; \
	  echo "# Written by make constraints (pip freeze of $(VENV), $(shell $(BIN)/python -c 'import platform; print("Python", platform.python_version())' 2>/dev/null)); do not edit by hand."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v ' @ ' | sed 's/+[A-Za-z0-9.]*$$//'; } > constraints/ci.txt.tmp
	mv constraints/ci.txt.tmp constraints/ci.txt

sync: $(STAMP)       ## Colab badge + set-up cell + slide metadata in every lesson (after editing one)
	$(BIN)/python tools/classroom.py sync

export: $(DEV)       ## after editing a lesson: regenerate the helpers modules from the lessons' `#| export` cells, then sync
	$(BIN)/python -m tools.export
	$(BIN)/python tools/classroom.py sync

slides: $(DEV)       ## instructor decks: build/slides/<lesson>.slides.html, reveal.js, work offline
	$(BIN)/python tools/classroom.py slides

students: $(DEV)     ## student copies without the solutions: build/students/
	$(BIN)/python tools/classroom.py students

site: $(DEV)         ## every lesson as HTML with an index (and the decks): build/site/index.html
	$(BIN)/python tools/classroom.py site

classroom: slides students site  ## slides, student copies and site in one go

grade: data          ## grade returned notebooks: make grade SUBMISSIONS=folder [GRADE_FLAGS="--timeout 600 --jobs 2"] (build/grades/)
	@test -n "$(SUBMISSIONS)" || { echo "Say which folder to grade: make grade SUBMISSIONS=path/to/returned/notebooks" >&2; exit 1; }
	$(BIN)/python -m tools.grade "$(SUBMISSIONS)" $(GRADE_FLAGS)

data: $(STAMP)       ## check/extract the datasets and build the tensor caches
	$(BIN)/python -m helpers provision

venv: $(STAMP)       ## only create .venv and install the lessons' stack and this project
# The stamp is written last, so an interrupted or failed step leaves it missing and the next run
# repeats the steps: a broken venv is cleared and made again, pip finishes what it started.
$(STAMP): requirements.txt pyproject.toml $(CONSTRAINTS)
	@if $(VENV_OK); then :; else \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	    echo "The lessons need Python 3.11 or newer, and '$(PYTHON)' is not one. Install one, then run: make PYTHON=python3.12 $(or $(MAKECMDGOALS),lab)" >&2; exit 1; }; \
	  echo "$(PYTHON) -m venv --clear $(VENV)"; $(PYTHON) -m venv --clear $(VENV) && $(VENV_OK); fi
	@echo '*' > $(VENV)/.gitignore  # git ignores the venv, whatever its name (as Python 3.13's venv does)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	touch $@

$(DEV): $(STAMP) requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

hub: $(DEV) $(PROXY)  ## a JupyterHub for a demo class on 127.0.0.1 (HUB_PORT=8000): the course for every learner, data shared read-only
	$(BIN)/python -m tools.hub start --dir $(HUB_DIR) --data $(HUB_DATA) --port $(HUB_PORT)

hub-stop:            ## stop the demo hub: every learner's server and kernel, the hub, its proxy
	$(BIN)/python -m tools.hub stop --dir $(HUB_DIR)

clean-hub: hub-stop  ## stop the demo hub and delete its state, learners' homes and the read-only shared data
	chmod -R u+w $(HUB_DATA) 2>/dev/null || true
	rm -rf $(HUB_DIR) $(HUB_DATA) $(HUB_DATA).lock

proxy: $(PROXY)      ## install configurable-http-proxy (the hub's proxy) with npm into .node/
$(PROXY): hub/package.json hub/package-lock.json
	mkdir -p .node
	cp hub/package.json hub/package-lock.json .node/
	npm ci --prefix .node --no-audit --no-fund --loglevel=error
	touch $@

clean-data:          ## remove extracted datasets and caches (kept: data/README.md)
	cd data && git clean -fdX .
