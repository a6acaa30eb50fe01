# The two commands of the README.
PYTHON ?= python3

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e ".[test]" torch==2.13.0  # the pin keeps the CPU build under the extras

demo: install
	$(PYTHON) -m stsmooth demo

test: install
	$(PYTHON) -m pytest -n 2 tests

bench: install
	$(PYTHON) benchmarks/teacher_update.py
