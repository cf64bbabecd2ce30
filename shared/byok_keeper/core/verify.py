"""Checking that KMS holds the material the vault holds: state, expiry, public key, canary.

The canary proves KMS can use the private key whose public key we know: for signing keys KMS
signs a fresh random digest and we verify it locally; for encryption keys we encrypt a fresh
random value locally (RSA) or through KMS (SM2) and KMS decrypts it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from ..crypto import sm2
from ..crypto.material import fingerprint, public_key_der_from
from ..crypto.specs import ENCRYPT_DECRYPT, key_spec
from ..domain.errors import ExecutionError, MaterialMismatch
from ..domain.model import KeyInfo, KeyState, format_kms_time
from ..vault import Vault

if TYPE_CHECKING:
    from ..gateway.kms.gateway import KmsGateway


class CanaryFailed(ExecutionError):
    """KMS could not use the key as its public key says it should."""

    def __init__(self, key_id: str, what: str) -> None:
        self.key_id = key_id
        super().__init__(f"canary failed for {key_id}: {what}")


# Another run (a second sweep, an on-call reimport) may import the same material between our
# import and the check after it, with an expiry it computed a moment before or after ours.
CONCURRENT_EXPIRY_SLACK = 300  # seconds
# What a key may be after an import: KMS does not say whether a Disabled key comes back Enabled
# or stays Disabled (docs/FIDELITY.md), and byok-keeper never enables or disables a key.
STATES_AFTER_IMPORT = (KeyState.ENABLED, KeyState.DISABLED)
NO_CANARY_WHEN_DISABLED = (
    "key stays Disabled: KMS shows no public key and runs no canary for a Disabled key, so only "
    "its state and expiry are proven"
)


@dataclass(frozen=True)
class ImportCheck:
    """What the check after an import proved."""

    key: KeyInfo  # DescribeKey after the import
    proof: str  # e.g. "sign ECDSA_SHA_256", or "state and expiry" for a Disabled key
    canary: str  # "" when no canary could run (a Disabled key)

    @property
    def stays_disabled(self) -> bool:
        return self.key.key_state == KeyState.DISABLED


def check_import(
    gateway: KmsGateway,
    key_id: str,
    *,
    expire_unix: int,
    fingerprint_sealed: str,
    public_key_der: bytes,
    identity_checked: bool = False,
) -> ImportCheck:
    """After ImportKeyMaterial: state, expiry, public key and a canary -- the one rule for
    enrollment and re-establishment.

    * state: Enabled, or Disabled (a disabled key may stay Disabled; the agent never enables);
    * expiry: never, or no earlier than ``CONCURRENT_EXPIRY_SLACK`` before ours -- anything
      earlier means KMS did not apply it;
    * an Enabled key: GetPublicKey must match ``fingerprint_sealed`` (unless the caller proved
      it this run, ``identity_checked``) and the canary must pass.

    Raises ``ExecutionError``, ``MaterialMismatch`` or ``CanaryFailed``.
    """
    after = gateway.describe_key(key_id)
    if after.key_state not in STATES_AFTER_IMPORT:
        raise ExecutionError(
            f"{key_id} is {after.key_state} after import; expected Enabled (or Disabled)"
        )
    actual = int(after.material_expire_time.timestamp()) if after.material_expire_time else 0
    if not (actual == 0 or (expire_unix != 0 and actual >= expire_unix - CONCURRENT_EXPIRY_SLACK)):
        shown = format_kms_time(after.material_expire_time) or "never"
        wanted = "never"
        if expire_unix:
            wanted = format_kms_time(datetime.fromtimestamp(expire_unix, tz=timezone.utc))
        raise ExecutionError(f"{key_id} reports expiry {shown}, imported with {wanted}")
    if after.key_state == KeyState.DISABLED:
        return ImportCheck(after, "state and expiry", "")
    if not identity_checked:
        seen = kms_fingerprint(gateway, after)
        if seen != fingerprint_sealed:
            raise MaterialMismatch(key_id, "KMS after import", fingerprint_sealed, seen)
    proof = canary(gateway, after, public_key_der)
    return ImportCheck(after, proof, proof)


@dataclass(frozen=True)
class Verification:
    key_id: str
    key_state: str
    kms_fingerprint: str
    canary: str  # what was proven, e.g. "sign RSA_PKCS1_SHA_256"


def kms_fingerprint(gateway: KmsGateway, key: KeyInfo) -> str:
    """SHA-256 of the key's public key as KMS reports it (needs an Enabled key)."""
    return fingerprint(
        public_key_der_from(gateway.get_public_key(key.key_id, gateway.key_version_id(key.key_id)))
    )


def canary(gateway: KmsGateway, key: KeyInfo, public_key_der: bytes) -> str:
    """Prove KMS can use the private half of ``public_key_der``. Raises ``CanaryFailed``."""
    spec = key_spec(key.key_spec)
    version = gateway.key_version_id(key.key_id)
    if key.key_usage == ENCRYPT_DECRYPT:
        secret = os.urandom(32)
        if spec.curve == "SM2":
            algorithm = "SM2PKE"
            ciphertext = gateway.asymmetric_encrypt(key.key_id, version, algorithm, secret)
        else:
            algorithm = "RSAES_OAEP_SHA_256"
            public = serialization.load_der_public_key(public_key_der)
            assert isinstance(public, rsa.RSAPublicKey)
            ciphertext = public.encrypt(
                secret,
                padding.OAEP(
                    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
                ),
            )
        if not hmac.compare_digest(
            gateway.asymmetric_decrypt(key.key_id, version, algorithm, ciphertext), secret
        ):
            raise CanaryFailed(key.key_id, f"{algorithm} decryption returned other bytes")
        return f"decrypt {algorithm}"

    message = os.urandom(32)
    if spec.curve == "SM2":
        public_sm2 = sm2.Sm2PublicKey.from_spki_der(public_key_der)
        digest = sm2.user_digest(public_sm2, message)
        signature = gateway.sign(key.key_id, version, "SM2DSA", digest)
        try:
            sm2.verify_digest(public_sm2, digest, *sm2.signature_from_der(signature))
        except sm2.Sm2Error:
            raise CanaryFailed(key.key_id, "SM2DSA signature does not verify") from None
        return "sign SM2DSA"
    digest = hashlib.sha256(message).digest()
    public = serialization.load_der_public_key(public_key_der)
    try:
        if spec.family == "RSA":
            # PKCS#1 v1.5 rather than PSS: no salt-length convention to guess.
            algorithm = "RSA_PKCS1_SHA_256"
            signature = gateway.sign(key.key_id, version, algorithm, digest)
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        else:
            algorithm = "ECDSA_SHA_256"
            signature = gateway.sign(key.key_id, version, algorithm, digest)
            assert isinstance(public, ec.EllipticCurvePublicKey)
            public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise CanaryFailed(key.key_id, f"{algorithm} signature does not verify") from None
    return f"sign {algorithm}"


def verify_identity(
    gateway: KmsGateway, key: KeyInfo, expected_fingerprint: str, public_key_der: bytes
) -> Verification:
    """For an Enabled key: KMS's public key must match the envelope, and the canary must pass."""
    actual = kms_fingerprint(gateway, key)
    if actual != expected_fingerprint:
        raise MaterialMismatch(key.key_id, "KMS", expected_fingerprint, actual)
    proven = canary(gateway, key, public_key_der)
    return Verification(key.key_id, key.key_state, actual, proven)


def verify_key(gateway: KmsGateway, vault: Vault, key_id: str) -> dict:
    """``byok-keeper verify`` for one key: open the envelope, compare with KMS, run a canary.

    Never imports. ``result`` is ``verified``, ``not-usable`` (the key is not Enabled, so only
    the envelope was checked), ``mismatch``, ``gone`` (KMS no longer has the key) or ``error``."""
    from ..domain.errors import ByokError
    from ..gateway.kms import KmsApiError

    material = None
    state = ""
    try:
        envelope, material = vault.fetch(key_id)
        key = gateway.describe_key(key_id)
        state = key.key_state
        if key.key_state != KeyState.ENABLED:
            return {
                "key_id": key_id,
                "result": "not-usable",
                "key_state": state,
                "detail": "envelope opens and matches its fingerprint; key not Enabled",
            }
        proof = verify_identity(gateway, key, envelope.fingerprint, material.public_key_der)
        return {
            "key_id": key_id,
            "result": "verified",
            "key_state": state,
            "detail": f"public key matches; canary {proof.canary}",
        }
    except MaterialMismatch as exc:
        return {"key_id": key_id, "result": "mismatch", "key_state": state, "detail": str(exc)}
    except ByokError as exc:
        gone = isinstance(exc, KmsApiError) and exc.code == "Forbidden.KeyNotFound"
        result = "gone" if gone else "error"
        return {"key_id": key_id, "result": result, "key_state": state, "detail": str(exc)}
    finally:
        if material is not None:
            material.wipe()


NEEDS_PERSON = frozenset({"mismatch", "gone"})  # the vault's material and KMS's key part ways


def verify_exit(results: list[dict], *, failed_targets: bool = False) -> int:
    """``verify``'s exit code (``exits``): 1 for an error (or a target that failed), else 4 when
    a key needs a person (``mismatch``, ``gone``), else 0 (``not-usable`` is not a failure)."""
    from ..domain import exits

    return exits.of_run(
        failed=failed_targets or any(r["result"] == "error" for r in results),
        alert=any(r["result"] in NEEDS_PERSON for r in results),
    )
