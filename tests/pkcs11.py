"""A real PKCS#11 token for the tests: SoftHSM2 (``make softhsm``), one token per test in its own
temporary ``SOFTHSM2_CONF``, initialised with ``softhsm2-util`` (SoftHSM's own tool, not ours).

Where SoftHSM2 is missing the PKCS#11 tests skip, except in CI (``CI`` set), where they fail:
``.ci/run`` installs it, and a green run must not hide a token test that never ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SO_PIN = "so-pin-5678"


def require_softhsm() -> str:
    """The path of softhsm2-util; skip (fail in CI) when SoftHSM2 is not installed."""
    util = shutil.which("softhsm2-util")
    if util and Path(MODULE).is_file():
        return util
    if os.environ.get("CI"):
        pytest.fail("SoftHSM2 is not installed (run make softhsm); CI must run the PKCS#11 tests")
    pytest.skip("SoftHSM2 is not installed (make softhsm)")


@dataclass(frozen=True)
class SoftToken:
    conf: Path
    label: str
    pin: str
    pin_file: Path

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}

    def uri(self, label: str = "byok-seal", *, pin_source: bool = True, extra: str = "") -> str:
        """The RFC 7512 URI of the AES key ``label`` in this token (PIN from its file)."""
        query = f"module-path={MODULE}"
        if pin_source:
            query += f"&pin-source=file:{quote(str(self.pin_file))}"
        return f"pkcs11:token={self.label};object={label}{extra}?{query}"


def make_token(directory: Path, label: str = "byok", pin: str = "user-pin-1234") -> SoftToken:
    """A fresh SoftHSM2 token in ``directory`` (its own config and token store), and a PIN file
    with mode 0600."""
    util = require_softhsm()
    directory.mkdir(parents=True, exist_ok=True)
    tokens = directory / "tokens"
    tokens.mkdir(mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n"
    )
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", SO_PIN],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    pin_file = directory / "pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(pin + "\n")
    return SoftToken(conf=conf, label=label, pin=pin, pin_file=pin_file)
