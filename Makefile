# Two commands on a fresh machine:  `make lab` (the lessons) and `make test` (the whole test suite).
# Each creates .venv, installs what it needs and this project, and provisions the data first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab lessons test data venv sync slides students site classroom clean-data
lab: data            ## open the lessons in JupyterLab, with this venv's Python as the kernel
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/

lessons: data        ## run every lesson top to bottom without a browser (results in build/executed/)
	$(BIN)/jupyter nbconvert --to notebook --execute --output-dir build/executed notebooks/*.ipynb

test: $(DEV) data    ## unit tests, classroom and browser tests, every notebook under nbval, on all cores
	OMP_NUM_THREADS=1 $(BIN)/pytest -n auto --dist loadfile --no-loadscope-reorder

sync: $(STAMP)       ## Colab badge + set-up cell + slide metadata in every lesson (after editing one)
	$(BIN)/python tools/classroom.py sync

slides: $(DEV)       ## instructor decks: build/slides/<lesson>.slides.html, reveal.js, work offline
	$(BIN)/python tools/classroom.py slides

students: $(DEV)     ## student copies without the solutions: build/students/
	$(BIN)/python tools/classroom.py students

site: $(DEV)         ## every lesson as HTML with an index (and the decks): build/site/index.html
	$(BIN)/python tools/classroom.py site

classroom: slides students site

data: $(STAMP)       ## check/extract the datasets and build the tensor caches
	$(BIN)/python -m helpers provision

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(DEV): $(STAMP) requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

clean-data:          ## remove extracted datasets and caches (kept: data/README.md)
	cd data && git clean -fdX .
