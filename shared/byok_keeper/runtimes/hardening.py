"""Process hardening for every entrypoint that holds key material (CLI, FC handlers, daemon).

``harden_process()`` is called first thing by each of them, is cheap and idempotent:

* ``RLIMIT_CORE = 0`` and ``PR_SET_DUMPABLE = 0``: a crash writes no core file with material in
  it, and other processes of the same user cannot ptrace this one or read its memory through
  ``/proc/PID/mem`` (Linux; elsewhere the rlimit alone).
* The Alibaba Cloud SDK's debug switch is neutralised: with ``DEBUG=sdk`` in the environment its
  HTTP core (``Tea``, ``darabonba``) prints every request line, which carries ``ImportToken`` and
  ``EncryptedKeyMaterial``, straight to stderr through its own handler. The variable is removed
  from this process's environment (the SDK reads it on every request).
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
# Environment switches that make the SDK print requests: name -> values that turn it on.
SDK_DEBUG_SWITCHES = {"DEBUG": ("sdk",)}


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0)


def dumpable() -> int | None:
    """The process's dumpable flag (Linux), or None where there is no prctl."""
    if not sys.platform.startswith("linux"):
        return None
    return _prctl(PR_GET_DUMPABLE)


def neutralise_sdk_debug(environ: dict[str, str] | None = None) -> list[str]:
    """Remove SDK debug switches from ``environ`` (default ``os.environ``); returns their names."""
    env = os.environ if environ is None else environ
    removed = []
    for name, values in SDK_DEBUG_SWITCHES.items():
        if env.get(name, "").strip().lower() in values:
            del env[name]
            removed.append(name)
    return removed


def harden_process() -> list[str]:
    """No core dumps, not dumpable, no SDK debug output. Returns what could not be done (each
    entrypoint logs it once; none of it stops the run)."""
    problems = []
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):  # pragma: no cover - not permitted on this platform
        problems.append("RLIMIT_CORE")
    if sys.platform.startswith("linux"):
        try:
            if _prctl(PR_SET_DUMPABLE, 0) != 0:  # pragma: no cover
                problems.append("PR_SET_DUMPABLE")
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            problems.append("PR_SET_DUMPABLE")
    neutralise_sdk_debug()
    return problems
