# The two entry points: `make demo` (the main job on the bundled default) and
# `make test` (the test suite). Both create .venv and install everything the
# first time; afterwards they reinstall only when pyproject.toml changes.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/interp-dossier
STAMP := $(VENV)/.installed
# pip prints a warning per unreachable local index; keep the output readable.
QUIET := 2>&1 | { grep -v '^WARNING: Location' || true; }

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first time: about two minutes)"
	@$(PY) -m pip install --quiet --upgrade pip $(QUIET)
	@# The CPU wheel of torch first, so that nothing pulls a CUDA build.
	@$(PY) -m pip install --quiet 'torch==2.13.0' $(QUIET)
	@$(PY) -m pip install --quiet -e '.[all,dev]' $(QUIET)
	@bash .ci/system-packages.sh
	@touch $(STAMP)

demo: install
	@rc=0; $(CLI) run --out out/ --force || rc=$$?; \
	if [ $$rc -ge 2 ]; then echo "demo: the run failed (exit $$rc); no bundle was written"; exit $$rc; fi; \
	echo; echo "== verifying the bundle as an auditor would =="; \
	vrc=0; $(CLI) verify out/ --trust out/signer.pem || vrc=$$?; \
	echo; echo "PDF: $(CURDIR)/out/dossier.pdf"; \
	if [ $$vrc -eq 0 ]; then echo "verification: PASSED"; else echo "verification: FAILED"; exit $$vrc; fi; \
	if [ $$rc -ne 0 ]; then echo "deployment gate: NOT PASSED (run exit $$rc) - the reasons are listed under 'gate:' above; the bundle itself is complete and verified"; else echo "deployment gate: PASSED"; fi

test: install
	@rc=0; $(PY) -m pytest -q || rc=$$?; exit $$rc

lint: install
	$(VENV)/bin/ruff check evidence signing tests benchmarks studies
	$(VENV)/bin/mypy

clean:
	rm -rf out build dist .pytest_cache
