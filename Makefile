# Two commands are all a learner needs:  `make lab`  (set up + open the course)  and  `make test`.
# Plain-pip equivalent: python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt -e .
#   then `.venv/bin/python -m kdcore.lab` (the course) or, with requirements-instructor.txt, `.venv/bin/python -m pytest`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Extra options for Jupyter, e.g.  make lab JUPYTER_ARGS="--port=9000 --ip=0.0.0.0"
JUPYTER_ARGS ?=

.PHONY: setup instructor lab test notebooks bench doctor ci-deps clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

# Instructor and CI tooling (nbgrader, playwright): `make test` needs it; `make lab` hides nbgrader's UI anyway.
instructor: $(VENV)/.instructor

$(VENV)/.instructor: $(VENV)/.installed requirements-instructor.txt
	$(BIN)/python -m pip install --quiet -r requirements-instructor.txt
	touch $@

lab: setup            ## set up, then open the course in JupyterLab (works as root; prints the URL)
	$(BIN)/python -m kdcore.doctor --quiet || true
	$(BIN)/python -m kdcore.lab $(JUPYTER_ARGS)

test: instructor      ## set up (if needed), then run every test and every solution notebook
	$(BIN)/python -m pytest -n 2 --dist loadfile

notebooks: setup      ## navigation links in every notebook, then learner notebooks from solutions/
	$(BIN)/python -m kdcore.assign

bench: setup          ## run the benchmarks (prints ratios; not part of the tests)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

doctor: setup
	$(BIN)/python -m kdcore.doctor

# System packages for CI (Debian, as root): Chromium for the real-browser test (tests/test_browser.py skips
# without it). Playwright's own browser download is not used: the test drives this Chromium.
ci-deps:             ## system packages the tests use: bubblewrap (grader sandbox), chromium (browser test); needs root
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap chromium </dev/null

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
