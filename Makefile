# The two set-up commands of the README:
#   make quickstart   environment + data + a real 8-trial search + export
#   make test         environment + data + lint + docs + the whole test suite (.ci/run calls this)
#   make docs         the documentation site in site/ (every warning an error)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quickstart test env data browser lint docs clean

env: $(STAMP)

# Re-install whenever pyproject.toml changes. uv resolves torch and torchvision
# together from one index, so the pair always matches. --compile-bytecode: uv
# writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (CI
# machines, containers) none is ever written, so every process (each Ray worker,
# each CLI call) would compile torch, Ray and MLflow from source again: 12 s of
# CPU per `import torch, ray.tune, mlflow, sklearn, optuna` instead of 4.6 s.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade uv
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -e ".[test]"
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/hpsearch data fetch

quickstart: data
	$(BIN)/hpsearch run spaces/quickstart.yaml --overwrite --export

# The UI test drives Debian's chromium through Playwright (which downloads no browser).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "make test needs Debian's chromium: apt-get install chromium (as root)"; exit 1; }

# Two pytest workers, a test file each at a time (--dist loadfile: a file's module fixtures,
# such as the hand-in notebooks' shared batch of searches, are built once). Much of a test
# is waiting: for a process to start, Ray to come up, a signal to land, so two at once keep
# both cores busy (the times: benchmarks/RESULTS.md, "Test suite").
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

test: data browser docs
	$(BIN)/ruff check hpsearch search trainables results cluster tests benchmarks
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hpsearch search trainables results cluster tests benchmarks

# The documentation site (mkdocs.yml, docs/): --strict makes every warning an error, so a
# broken link or anchor, a page missing from the navigation or an API name that does not
# resolve fails the build. The parameter tables and the command-line reference are
# generated while it builds (docs/hooks.py). NO_MKDOCS_2_WARNING: Material's banner.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site build/api-package
