# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
# Two pytest processes, one per core (most tests use one thread); a module's tests stay in one process, so its
# fixtures are built once.
TEST_WORKERS ?= 2

.PHONY: setup demo test bench clean

setup:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen

demo: setup
	$(UV) run leadscore demo

test: setup
	$(UV) run pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=15

bench: setup
	$(UV) run python bench/run.py

clean:
	rm -rf .leadscore bench/work bench/results.json
