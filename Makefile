# byok-keeper. Everything runs inside .venv, made with the machine's python3 when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Proxies would carry the SDK's loopback calls to the emulator away from it.
unexport HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

.PHONY: install demo test lint bench reliability mutation package dist lock clean chromium \
	softhsm systemd-tools promtool tools acceptance

# Dependencies only from constraints.txt, every file checked against its pinned sha256
# (--require-hashes); then the project's two distributions, byok-keeper (pyproject.toml) and
# aliyun-local (shared/pyproject.toml), editable: they have no hash to check, so --no-deps and
# without build isolation (setuptools too comes hashed from constraints.txt). pip check fails
# when pyproject.toml needs something constraints.txt lacks: run make lock.
PIP := $(BIN)/python -m pip --disable-pip-version-check
$(STAMP): pyproject.toml shared/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r constraints.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e . -e shared
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

# SoftHSM2 (Debian's softhsm2, a real PKCS#11 module) and OpenSC's pkcs11-tool, for the pkcs11
# sealer's tests (tests/pkcs11.py makes a token per test in a temporary SOFTHSM2_CONF) and
# bench/sealers.py. Idempotent: nothing to do when the module and softhsm2-util are there. Needs
# root or sudo; .ci/run runs it before make test, and there the PKCS#11 tests fail if it is missing.
SOFTHSM_MODULE ?= /usr/lib/softhsm/libsofthsm2.so
softhsm:
	@if [ -f $(SOFTHSM_MODULE) ] && command -v softhsm2-util >/dev/null; then \
	  echo "softhsm: $(SOFTHSM_MODULE) is installed"; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq softhsm2 opensc && \
	  test -f $(SOFTHSM_MODULE); fi

# systemd's own tools (Debian's package systemd: systemd-analyze, systemd-sysusers) for the
# units' checks (tests/unit/test_systemd_units.py). Idempotent: nothing to do when both exist.
# Needs root or sudo; .ci/run runs it before make test, and there those tests fail if missing.
systemd-tools:
	@if command -v systemd-analyze >/dev/null && command -v systemd-sysusers >/dev/null; then \
	  echo "systemd-tools: $$(command -v systemd-analyze) is installed"; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends systemd && \
	  command -v systemd-analyze >/dev/null; fi

# Prometheus's promtool (Debian's prometheus package) for the alert rules' tests
# (tests/unit/test_promtool.py: promtool check rules and promtool test rules). Idempotent:
# nothing to do when promtool is on PATH. Needs root or sudo; .ci/run runs it before make test,
# and there (CI set) those tests fail if it is missing.
promtool:
	@if command -v promtool >/dev/null; then echo "promtool: $$(command -v promtool) is installed"; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus && \
	  command -v promtool; fi

# The whole story against an embedded emulator and a temporary file vault; exits 0 only if
# every restorable key comes back with identical material.
demo: $(STAMP)
	$(BIN)/byok-keeper demo

# The distributions: wheels and sdists of byok-keeper and aliyun-local in dist/, each wheel
# built from its sdist, reproducible (SOURCE_DATE_EPOCH), metadata checked (deploy/dist.py).
dist: $(STAMP)
	$(BIN)/python deploy/dist.py --output dist

# Against a real account (opt-in, as Terraform's TF_ACC=1): BYOK_ACCEPTANCE=1, credentials (the
# standard chain), BYOK_REGION and BYOK_ACCEPTANCE_INSTANCE (a KMS instance id). It creates
# throwaway tagged EXTERNAL keys, drives the agent through them, writes acceptance-report.json
# (each answer that differs from aliyun-local's default, with its docs/FIDELITY.md row) and
# schedules its keys for deletion (7 days) whatever happened. Without BYOK_ACCEPTANCE=1 it
# refuses to start (exit 2). make test runs it against aliyun-local (test_acceptance.py).
acceptance: $(STAMP)
	$(BIN)/python -m tests.acceptance

# The Function Compute code package (reproducible): dist/byok-keeper-fc.zip
package: $(STAMP)
	$(BIN)/python deploy/package.py --output dist/byok-keeper-fc.zip

# template.yml, the ROS template, rendered from deploy/functions.yml and deploy/ram-policy.json
template: $(STAMP)
	$(BIN)/python deploy/ros.py

lint: $(STAMP)
	$(BIN)/ruff check shared functions tests bench deploy
	$(BIN)/ruff format --check shared functions tests bench deploy

# The real tools the tests use, from Debian's packages (Chromium, SoftHSM2, systemd-analyze,
# promtool): each target is idempotent, a no-op when its tool is there, so make test does all
# the set-up on a fresh machine (installing needs root or sudo).
tools: chromium softhsm systemd-tools promtool

test: tools lint
	$(BIN)/python -m pytest -q

# Benchmarks (not part of make test): wrapping, cold start, the sweep at the quota bound
# for 500, 2,000 and 5,000 keys (the 500 and 5,000 runs also time the naive baseline), and the
# fc-async path through aliyun-local's FC 3.0 at 5,000 keys, and the fleet report at 5,000
# keys (needs make chromium), and 4 targets x 1,250 keys (issue 16), and envelope throughput per
# sealer plus the sweep with the pkcs11 sealer against the file sealer (needs make softhsm).
bench: $(STAMP)
	$(BIN)/python bench/wrap.py
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/sweep.py --keys 500
	$(BIN)/python bench/sweep.py --keys 2000 --no-baseline
	$(BIN)/python bench/sweep.py --keys 5000
	$(BIN)/python bench/fc_async.py --keys 500
	$(BIN)/python bench/fc_async.py --keys 5000
	$(BIN)/python bench/fc_async.py --keys 500 --month
	$(BIN)/python bench/fc_async.py --keys 5000 --month
	$(BIN)/python bench/events.py
	$(BIN)/python bench/targets.py --targets 4 --keys 1250
	$(BIN)/python bench/report.py --keys 5000
	$(BIN)/python bench/report.py --keys 50000
	$(BIN)/python bench/scale.py --keys 5000 50000
	$(BIN)/python bench/sealers.py
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
# MUTATE="reestablish plan" to run some (or a file: MUTATE=shared/byok_keeper/gateway/kms/gateway.py);
# JOBS=2 for two workers. Results in .mutation/.
MUTATE ?=
JOBS ?= 1
mutation: $(STAMP)
	$(BIN)/python -m tests.mutation --jobs $(JOBS) $(MUTATE)


# Pin and hash every dependency (runtime, test, deploy, hsm and the build backend) into
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
	  --extra test --extra deploy --extra hsm \
	  $(if $(filter --all,$(UPGRADE)),--upgrade,$(foreach p,$(UPGRADE),--upgrade-package $(p))) \
	  --output-file constraints.txt pyproject.toml
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist shared/*.egg-info .reliability.jsonl .mutation
