# Two commands on a fresh machine:  `make lab` (the lessons) and `make test` (the whole test suite).
# Each creates .venv, installs requirements.txt and this project, and provisions the data first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab lessons test data venv clean-data
lab: data            ## open the lessons in JupyterLab (as root, e.g. in a container, Jupyter needs --allow-root)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

lessons: data        ## run every lesson top to bottom without a browser (results in build/executed/)
	$(BIN)/jupyter nbconvert --to notebook --execute --output-dir build/executed notebooks/*.ipynb

test: data           ## unit tests + every notebook under nbval, on all cores
	OMP_NUM_THREADS=1 $(BIN)/pytest -n auto --dist loadfile

data: $(STAMP)       ## check/extract the datasets and build the tensor caches
	$(BIN)/python -m helpers provision

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

clean-data:          ## remove extracted datasets and caches (kept: data/README.md)
	cd data && git clean -fdX .
