"""ListKeys' answer kept between its pages.

A caller pages through every key 100 at a time; building the filtered, oldest-first list anew
for each page made a full listing cost pages x keys (500 x 50,000 at 50,000 keys). The list is
kept while nothing changed: no call that changes a key (``KmsBackend.changed`` bumps the
generation), and the clock not yet past the first moment a key's deletion window ends or its
material expires (those change a key without a call).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any


def next_change(keys: Iterable[Any]) -> float:
    """The first moment the clock alone changes one of ``keys`` (``inf``: never)."""
    moments = [k.delete_at for k in keys if k.delete_at is not None]
    moments += [k.material_expire for k in keys if k.material is not None and k.material_expire]
    return min(moments, default=math.inf)


class Listing:
    def __init__(self) -> None:
        self.generation = 0
        self._kept: tuple[int, str, float, list] | None = None

    def changed(self) -> None:
        self.generation += 1

    def get(self, filters: str, now: float, build: Callable[[], tuple[list, float]]) -> list:
        """The list for ``filters`` (its JSON), kept or ``build()`` anew (the list and the
        moment it goes stale)."""
        kept = self._kept
        if kept is not None and kept[:2] == (self.generation, filters) and now < kept[2]:
            return kept[3]
        keys, until = build()
        self._kept = (self.generation, filters, until, keys)
        return keys
