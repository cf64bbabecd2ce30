"""sweep.bounded_map: Executor.map's results, with a bounded number of calls submitted ahead
(a fleet of 50,000 keys does not hold 50,000 futures at once)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from byok_keeper.core.sweep import bounded_map


def test_results_in_order_with_at_most_ahead_submitted():
    submitted = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            submitted.append(i)
        return i * i

    def items():  # a generator, as bounded_map takes any iterable
        yield from range(100)

    seen_when_first = None
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = []
        for r in bounded_map(pool, work, items(), 8):
            if seen_when_first is None:
                seen_when_first = len(submitted)
            results.append(r)
    assert results == [i * i for i in range(100)]
    assert seen_when_first is not None and seen_when_first <= 8


def test_a_call_that_raises_stops_the_map_and_cancels_the_rest():
    started = []
    gate = threading.Event()

    def work(i: int) -> int:
        started.append(i)
        if i == 0:
            raise RuntimeError("lost")
        gate.wait(5)
        return i

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(RuntimeError, match="lost"):
            list(bounded_map(pool, work, range(50), 4))
        gate.set()
    assert len(started) <= 4  # never more than were submitted ahead; the rest never ran
