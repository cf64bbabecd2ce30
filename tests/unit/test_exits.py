"""The exit-code contract's precedence: 2 (usage) > 1 (failure) > 4 (a key needs a person) >
3 (work pending) > 0."""

from __future__ import annotations

import pytest

from byok_keeper.domain import exits


@pytest.mark.parametrize(
    ("found", "code"),
    [
        ({}, 0),
        ({"pending": True}, 3),
        ({"alert": True}, 4),
        ({"alert": True, "pending": True}, 4),
        ({"failed": True}, 1),
        ({"failed": True, "alert": True, "pending": True}, 1),
    ],
)
def test_a_run_exits_with_its_most_urgent_finding(found, code):
    assert exits.of_run(**found) == code


def test_usage_wins_over_every_other_code():
    assert exits.worst([0, 3, 4, 1, 2]) == 2
    assert exits.worst([3, 4]) == 4 and exits.worst([]) == 0
    with pytest.raises(ValueError):
        exits.worst([5])
