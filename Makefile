# byok-keeper. Everything runs inside .venv, made with the machine's python3 when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Proxies would carry the SDK's loopback calls to the emulator away from it.
unexport HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

.PHONY: install demo test lint bench reliability mutation package lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,deploy,daemon]'
	touch $(STAMP)

install: $(STAMP)

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

# Benchmarks (not part of make test): wrapping, cold start, and the sweep at the quota bound
# for 500, 2,000 and 5,000 keys (the 500 and 5,000 runs also time the naive baseline).
bench: $(STAMP)
	$(BIN)/python bench/wrap.py
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/sweep.py --keys 500
	$(BIN)/python bench/sweep.py --keys 2000 --no-baseline
	$(BIN)/python bench/sweep.py --keys 5000

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
# MUTATE="reestablish plan" to run some; JOBS=2 for two workers. Results in .mutation/.
MUTATE ?=
JOBS ?= 1
mutation: $(STAMP)
	$(BIN)/python -m tests.mutation --jobs $(JOBS) $(MUTATE)

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
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist shared/*.egg-info .reliability.jsonl .mutation
