# Two commands on a fresh machine:
#   make demo   build .venv and de-identify sample_data/ into out/sample
#   make test   build .venv and run the test suite (the same command .ci/run runs)
# On a CUDA host pick the CUDA build of torch, e.g.:
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# test processes for the default suite (pytest-xdist; 0: one process). Two halve no test's own work (many
# run a 2-worker Dask cluster) but fill the second core while the other waits on its subprocesses:
# 10:10 -> 6:53 on the 2-core machine (benchmarks/README.md, thirty-third session)
TEST_WORKERS ?= 2
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deid-installed

.PHONY: env demo test test-slow sample-data clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	rm -rf out/sample out/sample.private
	$(VENV)/bin/deid run sample_data out/sample --profile safe-harbor --workers 2; rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "make demo: exit status 3 is expected: sample_data/junk holds a truncated file, which is quarantined (see out/sample/manifest.jsonl)"; exit 0; fi; exit $$rc

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadscope

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

sample-data: $(STAMP)
	$(PY) scripts/make_sample_data.py

clean:
	rm -rf out $(VENV)
