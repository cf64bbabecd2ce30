"""pytest plugin for ``tests.mutation``: which test runs which line of one module.

Loaded with ``-p tests.mutation_trace`` when ``BYOK_MUTATION_TRACE`` names a source file;
writes ``{"lines": {line: [test ids]}, "durations": {test id: seconds}}`` to
``BYOK_MUTATION_TRACE_OUT``. Lines run outside any test (at import) are listed under ``""``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

TARGET = os.environ.get("BYOK_MUTATION_TRACE", "")
OUT = os.environ.get("BYOK_MUTATION_TRACE_OUT", "")
_current = [""]
_lines: dict[int, set[str]] = defaultdict(set)
_durations: dict[str, float] = defaultdict(float)


def _local(frame: Any, event: str, _arg: Any) -> Any:
    if event == "line":
        _lines[frame.f_lineno].add(_current[0])
    return _local


def _global(frame: Any, event: str, _arg: Any) -> Any:
    if frame.f_code.co_filename == TARGET:
        _lines[frame.f_lineno].add(_current[0])
        return _local
    return None


def pytest_configure(config: pytest.Config) -> None:
    if TARGET:
        sys.settrace(_global)
        threading.settrace(_global)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _current[0] = item.nodeid
    started = time.monotonic()
    yield
    _durations[item.nodeid] += time.monotonic() - started
    _current[0] = ""


def pytest_unconfigure(config: pytest.Config) -> None:
    if TARGET and OUT:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
        with open(OUT, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "lines": {str(k): sorted(v) for k, v in _lines.items()},
                    "durations": dict(_durations),
                },
                fh,
            )
