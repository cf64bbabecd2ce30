"""OpenSSL as an independent oracle: its command lines in one place, for the tests (through
``tests.conftest.openssl``, which skips or fails the test) and for bench/wrap.py's baseline.

No pytest here: bench imports this module by path, as bench/report.py imports tests.fleet.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

OPENSSL = shutil.which("openssl")

# How OpenSSL makes a private key of each spec (PEM on stdout).
KEYGEN = {
    "RSA_2048": ["genrsa", "2048"],
    "RSA_3072": ["genrsa", "3072"],
    "RSA_4096": ["genrsa", "4096"],
    "EC_P256": ["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
    "EC_P256K": ["ecparam", "-name", "secp256k1", "-genkey", "-noout"],
    "EC_SM2": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2"],
}
# `openssl pkeyutl` options for RSAES-OAEP with SHA-256 and MGF1-SHA-256 (the seed procedure's
# RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD wraps its ephemeral key with them).
OAEP_SHA256 = [
    "-pkeyopt",
    "rsa_padding_mode:oaep",
    "-pkeyopt",
    "rsa_oaep_md:sha256",
    "-pkeyopt",
    "rsa_mgf1_md:sha256",
]


class OpenSSLFailed(Exception):
    """An openssl command failed; the message carries the end of its stderr."""


def run(*args: str | Path, input: bytes | None = None, cwd: Path | None = None) -> bytes:
    """Run the openssl command line tool and return its stdout (``OPENSSL`` must be set)."""
    if OPENSSL is None:
        raise OpenSSLFailed("the openssl command line tool is not installed")
    proc = subprocess.run(
        [OPENSSL, *map(str, args)], input=input, capture_output=True, cwd=cwd, timeout=120
    )
    if proc.returncode != 0:
        raise OpenSSLFailed(
            f"openssl {' '.join(map(str, args))} failed: {proc.stderr.decode()[-500:]}"
        )
    return proc.stdout


def seed_wrap(sm2_wrapping: bool, tak: Path, public_pem: Path, work: Path) -> str:
    """One wrap exactly as the seed procedure does it, one openssl process per step: a random
    ephemeral key, encrypted under the wrapping public key (OAEP-SHA-256, or SM2 re-encoded from
    OpenSSL's DER to C1C3C2), then the material under it (AES-256-ECB, or SM4-ECB unpadded).
    Returns EncryptedKeyMaterial (Base64)."""
    from byok_keeper.crypto import sm2  # the C1C3C2 conversion only; imported where used

    esk = work / "esk.bin"
    run("rand", "-out", esk, "16" if sm2_wrapping else "32")
    if sm2_wrapping:
        enc_esk = sm2.ciphertext_from_der(
            run("pkeyutl", "-encrypt", "-pubin", "-inkey", public_pem, "-in", esk)
        )
        enc_tak = run("enc", "-sm4-ecb", "-nopad", "-in", tak, "-K", esk.read_bytes().hex())
    else:
        enc_esk = run(
            "pkeyutl", "-encrypt", "-pubin", "-inkey", public_pem, "-in", esk, *OAEP_SHA256
        )
        enc_tak = run("enc", "-aes-256-ecb", "-in", tak, "-K", esk.read_bytes().hex())
    return base64.b64encode(enc_esk + enc_tak).decode()
