# byok-keeper. Everything runs inside .venv, made with the machine's python3 when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Proxies would carry the SDK's loopback calls to the emulator away from it.
unexport HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

.PHONY: install demo test lint bench reliability mutation package lock clean chromium

# Dependencies only from constraints.txt, every file checked against its pinned sha256
# (--require-hashes); then the project itself, which has no hash to check, with --no-deps and
# without build isolation (setuptools too comes hashed from constraints.txt). pip check fails
# when pyproject.toml needs something constraints.txt lacks: run make lock.
PIP := $(BIN)/python -m pip --disable-pip-version-check
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r constraints.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
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
# fc-async path through aliyun-local's FC 3.0 at 5,000 keys, and the fleet report at 5,000
# keys (needs make chromium), and 4 targets x 1,250 keys (issue 16).
bench: $(STAMP)
	$(BIN)/python bench/wrap.py
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/sweep.py --keys 500
	$(BIN)/python bench/sweep.py --keys 2000 --no-baseline
	$(BIN)/python bench/sweep.py --keys 5000
	$(BIN)/python bench/fc_async.py --keys 5000
	$(BIN)/python bench/events.py
	$(BIN)/python bench/targets.py --targets 4 --keys 1250
	$(BIN)/python bench/report.py --keys 5000
	$(BIN)/python bench/redaction.py

# The reliability figures of docs/RELIABILITY.md: the fault matrix, SIGKILL and restart drills,
# the hostile-input corpus, the fuzzers and the leak harness (all also part of make test), with
# each drill recording what it observed; then the summary, written into docs/RELIABILITY.md.
RELIABILITY_TESTS := tests/functional/test_faults.py tests/e2e/test_drills.py \
	tests/e2e/test_bad_input.py tests/e2e/test_leaks.py tests/fuzz \
	tests/functional/test_vault.py::test_every_single_byte_flip_is_refused
# Each test records what it observed before asserting; the figures (and the generated blocks
# of docs/RELIABILITY.md) are written even when a test failed, and then make fails.
reliability: $(STAMP)
	rm -f .reliability.jsonl
	BYOK_FIGURES=$(CURDIR)/.reliability.jsonl $(BIN)/python -m pytest -q $(RELIABILITY_TESTS); \
	status=$$?; \
	$(BIN)/python -m tests.figures .reliability.jsonl --write docs/RELIABILITY.md && exit $$status

# Mutation testing (not part of make test; tens of minutes on 2 cores): each module that guards
# material and keys, mutated one change at a time, against the tests that run the changed line.
# MUTATE="reestablish plan" to run some (or a file: MUTATE=shared/byok_keeper/kms/gateway.py);
# JOBS=2 for two workers. Results in .mutation/.
MUTATE ?=
JOBS ?= 1
mutation: $(STAMP)
	$(BIN)/python -m tests.mutation --jobs $(JOBS) $(MUTATE)


# Pin and hash every dependency (runtime, test, deploy, daemon and the build backend) into
# constraints.txt with pip-compile. Existing pins are kept; new dependencies are resolved within
# pyproject.toml's ranges. Upgrade one pin: make lock UPGRADE=cryptography (or UPGRADE="a b");
# every pin to the newest allowed: make lock UPGRADE=--all.
PIP_TOOLS := pip-tools==7.6.2
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --disable-pip-version-check '$(PIP_TOOLS)'
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --all-build-deps --strip-extras --no-emit-index-url --no-emit-find-links \
	  --extra test --extra deploy --extra daemon \
	  $(if $(filter --all,$(UPGRADE)),--upgrade,$(foreach p,$(UPGRADE),--upgrade-package $(p))) \
	  --output-file constraints.txt pyproject.toml
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist shared/*.egg-info .reliability.jsonl .mutation
