# scalescope — the two commands: `make demo` and `make test` (both work on a fresh clone).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.scalescope-installed
TRACES ?= traces
REPORT ?= report
PYTEST_ARGS ?=

.PHONY: setup demo test report tensorboard bench browser collect gpu-check clean help

help:
	@echo "make demo       set up .venv, run the sweep that fits this machine, write $(REPORT)/index.html"
	@echo "make test       set up .venv (+ headless Chromium when root), run the test suite"
	@echo "make report     re-run the analysis over $(TRACES)/"
	@echo "make tensorboard  serve $(TRACES)/ on http://127.0.0.1:6006"
	@echo "make bench      overhead + analysis-speed benchmarks -> benchmarks/RESULTS.md"
	@echo "make collect    unpack HTCondor results/ into $(TRACES)/"
	@echo "make gpu-check  short real-GPU runs + checks (needs a CUDA GPU)"

# The lock pins everything (analysis, the `train` extra, tests); `pip install .` alone is the torch-free analysis.
# scripts/install_lock.py installs it with a low disk peak (large wheels one at a time, no pip cache).
$(STAMP): pyproject.toml requirements/lock.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) scripts/install_lock.py requirements/lock.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

setup: $(STAMP)

demo: setup
	$(PY) -m models.sweep --preset auto --demo --out $(TRACES) --report-out $(REPORT)

test: setup browser
	$(VENV)/bin/lint-imports   # the layers and no import cycles (pyproject [tool.importlinter])
	$(PY) -m pytest -q $(PYTEST_ARGS)

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: browser tests will be skipped"; \
	  else echo "chromium not found (not root): browser tests will be skipped"; fi; }

report: setup
	$(PY) -m analysis.report $(TRACES) --out $(REPORT) --tensorboard

tensorboard: setup
	$(VENV)/bin/tensorboard --logdir $(TRACES) --host 127.0.0.1 --port 6006

bench: setup
	$(PY) -m pip install -q holistictraceanalysis
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/analysis_speed.py

collect: setup
	$(PY) -m analysis.condor.collect results --into $(TRACES)

gpu-check: setup
	bash scripts/gpu_check.sh

clean:
	rm -rf $(TRACES) $(REPORT) .pytest_cache
