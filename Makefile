# The two commands of the README:
#   make demo   set up a virtual environment and certify the shipped VAE on digits
#   make test   set up the same environment, lint, and run the test suite
PYTHON ?= python3
VENV ?= .venv
# A CPU build is enough; override to pick another torch (e.g. TORCH="torch==2.13.0+cu126").
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint models bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rcert margin --model models/vae-digits.safetensors

lint: $(STAMP)
	$(BIN)/ruff check rcert tests benchmarks

# pytest exits 5 when it collects no tests: say so, and fail.
test: lint
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

models: $(STAMP)
	RCERT=$(abspath $(BIN)/rcert) bash models/regenerate.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_jacobian.py
	$(BIN)/python benchmarks/bench_montecarlo.py
	$(BIN)/python benchmarks/bench_empirical.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_startup.py --rcert $(abspath $(BIN)/rcert)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
