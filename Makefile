# Two commands are all a learner needs:  `make lab`  (set up + open the course)  and  `make test`.
# Plain-pip equivalent: python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt -e .
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup lab test notebooks bench doctor clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

lab: setup            ## set up, then open the course in JupyterLab
	$(BIN)/python -m kdcore.doctor --quiet || true
	$(BIN)/jupyter lab notebooks/

test: setup           ## set up (if needed), then run every test and every solution notebook
	$(BIN)/python -m pytest -n 2 --dist loadfile

notebooks: setup      ## regenerate learner notebooks from solutions/
	$(BIN)/python -m kdcore.assign

bench: setup          ## run the benchmarks (prints ratios; not part of the tests)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

doctor: setup
	$(BIN)/python -m kdcore.doctor

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
