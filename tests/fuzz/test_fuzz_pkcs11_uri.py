"""Bounded fuzzing of the pkcs11 URI parser (issue 28): any text is a parsed URI or one
``ConfigError``, never another exception; a URI carrying ``pin-value`` anywhere is refused and the
refusal never quotes the PIN."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byok_keeper.domain.errors import ConfigError
from byok_keeper.vault.pkcs11_uri import Pkcs11Uri, parse_uri

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
NAMES = ["token", "object", "id", "serial", "type", "slot-id", "module-path", "pin-source",
         "pin-value", "x-vendor", "model", ""]  # fmt: skip
VALUES = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["byok", "%00", "%zz", "/bin/sh", "secret-key", "12", "file:/nonexistent"]
)
ATTRS = st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=6)


def _join(attrs) -> str:
    return ";".join(f"{n}={v}" for n, v in attrs)


@FUZZ
@given(path=ATTRS, query=ATTRS)
def test_any_uri_parses_or_is_one_config_error(path, query):
    uri = f"pkcs11:{_join(path)}?{_join(query).replace(';', '&')}"
    try:
        parsed = parse_uri(uri)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(parsed, Pkcs11Uri) and parsed.token and parsed.object
    assert "pin-value" not in [n for n, _ in path + query]


@FUZZ
@given(pin=st.text(alphabet="0123456789", min_size=6, max_size=16),
       in_query=st.booleans())  # fmt: skip
def test_a_pin_value_is_refused_without_being_quoted(pin, in_query):
    uri = (
        f"pkcs11:token=byok;object=k?module-path=/bin/sh&pin-value={pin}"
        if in_query
        else f"pkcs11:token=byok;object=k;pin-value={pin}?module-path=/bin/sh"
    )
    with pytest.raises(ConfigError, match="pin-value is refused") as refused:
        parse_uri(uri)
    assert pin not in str(refused.value)
