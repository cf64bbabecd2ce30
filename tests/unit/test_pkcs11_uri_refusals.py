"""The PKCS#11 URI's, module path's and PIN file's refusals, each by its own words.

The fuzz test (tests/fuzz/test_fuzz_pkcs11_uri.py) checks that hostile URIs are refused
cleanly; any refusal passes it, so a check removed alone went unseen while a later one still
refused the input (pkcs11_uri's mutation run, docs/RELIABILITY.md). Here each bad input names
the one check that must refuse it, and a good input shows what the check must let through.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from byok_keeper.domain.errors import ConfigError
from byok_keeper.vault.pkcs11_uri import Pkcs11Uri, check_module_path, parse_uri, read_pin

MODULE = "/usr/bin/env"  # a root-owned regular file in root-owned folders: trusted as a module
GOOD = f"pkcs11:token=byok;object=seal?module-path={MODULE}"


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("pkcs11:token=;object=seal?module-path=/usr/bin/env", "token is empty or holds control"),
        ("pkcs11:token=a%0ab;object=seal?module-path=/usr/bin/env", "token is empty or holds"),
        ("pkcs11:token=byok;object?module-path=/usr/bin/env", "attribute 'object' has no value"),
        ("pkcs11:token=a;token=b;object=s?module-path=/usr/bin/env", "token is given twice"),
        ("pkcs:token=byok;object=seal?module-path=/usr/bin/env", "must be a pkcs11: URI"),
        ("pkcs11:token=byok;object=seal?module-path=/usr/bin/env&colour=red", "query attribute"),
        ("pkcs11:token=byok;object=seal;slot-id=1a?module-path=/usr/bin/env", "slot-id must be"),
        ("pkcs11:token=byok;object=seal;id=?module-path=/usr/bin/env", "id is empty"),
    ],
)
def test_each_bad_uri_is_refused_by_its_own_check(uri, words):
    with pytest.raises(ConfigError, match=words):
        parse_uri(uri)


def test_a_good_uri_with_spaces_a_site_attribute_and_a_slot_passes():
    good = GOOD.replace("token=byok;object=seal?", "token=My%20HSM;object=seal;slot-id=12;id=%01?")
    uri = parse_uri(good + "&x-site=kept")
    assert (uri.token, uri.object, uri.slot_id, uri.id) == ("My HSM", "seal", 12, b"\x01")


def test_a_module_path_that_is_not_a_regular_file_is_refused():
    with pytest.raises(ConfigError, match="is not a regular file"):
        check_module_path("/usr/bin")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_module_owned_by_another_user_is_refused(tmp_path):
    module = tmp_path / "lib.so"
    shutil.copy(MODULE, module)
    os.chown(module, 4321, 4321)
    with pytest.raises(ConfigError, match="owned by uid 4321, neither root nor the user"):
        check_module_path(str(module))


def _pin_file(tmp_path: Path, data: bytes, mode: int = 0o600) -> Pkcs11Uri:
    pin = tmp_path / "pin"
    pin.write_bytes(data)
    os.chmod(pin, mode)
    return Pkcs11Uri(token="byok", object="seal", module_path=MODULE, pin_source=f"file://{pin}")


def test_a_pin_file_named_with_three_slashes_is_read(tmp_path):
    assert read_pin(_pin_file(tmp_path, b"1234\n")) == bytearray(b"1234")


def test_a_windows_line_ending_is_dropped_whole(tmp_path):
    assert read_pin(_pin_file(tmp_path, b"1234\r\n")) == bytearray(b"1234")


def test_an_empty_pin_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is empty"):
        read_pin(_pin_file(tmp_path, b"\n"))


def test_a_relative_pin_source_is_refused():
    uri = Pkcs11Uri(token="byok", object="seal", module_path=MODULE, pin_source="file:pin.txt")
    with pytest.raises(ConfigError, match="pin-source must be file:/absolute/path"):
        read_pin(uri)


@pytest.mark.parametrize(("mode", "problem"), [(0o620, "writable by group"), (0o604, "readable")])
def test_a_pin_file_others_can_change_or_read_is_refused_and_wiped(tmp_path, mode, problem):
    with pytest.raises(ConfigError, match=problem):
        read_pin(_pin_file(tmp_path, b"1234\n", mode))


def test_execute_bits_alone_do_not_refuse_a_pin_file(tmp_path):
    """The refusals look at write and read bits only: 0o711 is neither."""
    assert read_pin(_pin_file(tmp_path, b"1234\n", 0o711)) == bytearray(b"1234")


def test_a_root_owned_module_is_trusted_by_a_user_that_is_not_root(monkeypatch):
    """Root's modules (/usr/lib/...) are the usual case for a service user: uid 0 is trusted
    whoever runs byok-keeper (the process's identity is the edge faked here)."""
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    assert check_module_path(MODULE) == MODULE
