# byok-keeper. Everything runs inside .venv, made with the machine's python3 when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Proxies would carry the SDK's loopback calls to the emulator away from it.
unexport HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

.PHONY: install demo test lint bench reliability package lock clean chromium

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,deploy,daemon]'
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium (Debian's package) for the fleet report's screenshot test
# (tests/e2e/test_report.py). Idempotent: nothing to do when /usr/bin/chromium exists. Needs
# root or sudo; .ci/run runs it before make test, and there the test fails if it is missing.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then echo "chromium: $(CHROMIUM) is installed"; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium && \
	  test -x $(CHROMIUM); fi

# The whole story against an embedded emulator and a temporary file vault; exits 0 only if
# every restorable key comes back with identical material.
demo: $(STAMP)
	$(BIN)/byok-keeper demo

# The Function Compute code package (reproducible): dist/byok-keeper-fc.zip
package: $(STAMP)
	$(BIN)/python deploy/package.py --output dist/byok-keeper-fc.zip

lint: $(STAMP)
	$(BIN)/ruff check shared functions tests bench deploy
	$(BIN)/ruff format --check shared functions tests bench deploy

test: lint
	$(BIN)/python -m pytest -q

# Benchmarks (not part of make test): wrapping, cold start, the sweep at the quota bound
# for 500, 2,000 and 5,000 keys (the 500 and 5,000 runs also time the naive baseline), and the
# fleet report at 5,000 keys (needs make chromium).
bench: $(STAMP)
	$(BIN)/python bench/wrap.py
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/sweep.py --keys 500
	$(BIN)/python bench/sweep.py --keys 2000 --no-baseline
	$(BIN)/python bench/sweep.py --keys 5000
	$(BIN)/python bench/report.py --keys 5000

# The reliability figures of docs/RELIABILITY.md: the fault matrix, SIGKILL and restart drills,
# the hostile-input corpus, the fuzzers and the leak harness (all also part of make test), with
# each drill recording what it tried; then the summary.
RELIABILITY_TESTS := tests/functional/test_faults.py tests/e2e/test_drills.py \
	tests/e2e/test_bad_input.py tests/e2e/test_leaks.py tests/fuzz \
	tests/functional/test_vault.py::test_every_single_byte_flip_is_refused
reliability: $(STAMP)
	rm -f .reliability.jsonl
	BYOK_FIGURES=$(CURDIR)/.reliability.jsonl $(BIN)/python -m pytest -q $(RELIABILITY_TESTS)
	$(BIN)/python -m tests.figures .reliability.jsonl

# Refresh constraints.txt from a clean resolve of pyproject.toml's ranges.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --disable-pip-version-check '.[test]'
	{ echo "# Exact versions for every install of byok-keeper (make uses this with pip -c)."; \
	  echo "# Regenerate: make lock (after changing pyproject.toml dependencies)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^byok-keeper'; } > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist shared/*.egg-info .reliability.jsonl
