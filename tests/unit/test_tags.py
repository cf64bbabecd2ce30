"""KMS's tag rules (the seed page), as the agent checks them before any tag is written."""

from __future__ import annotations

import re

import pytest

from byok_keeper.domain.errors import InputError
from byok_keeper.domain.tags import MAX_TAGS_PER_KEY, check_tag, check_tags


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("byok-keeper:hold", "INC-1234: compromised - material deleted on purpose"),
        ("byok-keeper:lease", "30d"),
        ("byok-keeper:fingerprint", "ab" * 32),
        ("k" * 128, "v" * 128),
        ("a/b\\c_d-e.f+g=h:i@j k", ""),
    ],
)
def test_tags_within_the_rule_pass(key, value):
    check_tag(key, value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("k" * 129, "v", "tag key"),
        ("k", "v" * 129, "tag value"),
        ("k", "a,b", "tag value"),
        ("k", "line\nbreak", "tag value"),
        ("k", "é", "tag value"),
        ("aliyun-x", "v", "tag key"),
        ("ACS:x", "v", "tag key"),
        ("", "v", "empty"),
    ],
)
def test_tags_outside_the_rule_are_refused_with_the_rule(key, value, message):
    with pytest.raises(InputError, match=message) as exc:
        check_tag(key, value)
    assert "\n" not in str(exc.value)
    if message != "empty":
        assert "at most 128 characters" in str(exc.value)


def test_at_most_twenty_tags_per_request():
    check_tags({f"t{i}": "v" for i in range(MAX_TAGS_PER_KEY)})
    with pytest.raises(InputError, match="at most 20 tags"):
        check_tags({f"t{i}": "v" for i in range(MAX_TAGS_PER_KEY + 1)})


def test_the_hold_help_example_obeys_the_rule():
    from byok_keeper.runtimes.cli import hold_cmd

    (reason,) = re.findall(r'--reason "([^"]+)"', hold_cmd.help or "")
    check_tag("byok-keeper:hold", reason)
