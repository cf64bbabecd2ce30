"""Key specs, usages, protection levels and wrapping algorithms: the data, in one place.

Everything here is a fact about Alibaba Cloud KMS, with its source in docs/FIDELITY.md (the specs
per protection level: docs/FIDELITY.md#documented-what-aliyun-local-enforces-by-default; the
wrapping algorithms: docs/FIDELITY.md#wrapped-key-material). Other modules look things up here
instead of repeating strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.errors import InputError, WrappingError

# Key usages as KMS spells them.
ENCRYPT_DECRYPT = "ENCRYPT/DECRYPT"
SIGN_VERIFY = "SIGN/VERIFY"
USAGES: tuple[str, ...] = (ENCRYPT_DECRYPT, SIGN_VERIFY)

# Protection levels as KMS spells them: a software KMS instance gives SOFTWARE keys, a hardware
# (HSM-backed) instance gives HSM keys.
SOFTWARE = "SOFTWARE"
HSM = "HSM"
PROTECTION_LEVELS: tuple[str, ...] = (SOFTWARE, HSM)

# Wrapping algorithms for asymmetric key import.
RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD = "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"
SM2PKE_SM4_ECB = "SM2PKE_SM4_ECB"

# How the target key (TAK) is encoded before it is wrapped.
PKCS8_DER = "PKCS8_DER"
RAW_SM2_D = "RAW_SM2_D"


@dataclass(frozen=True)
class WrappingAlgorithm:
    """One import wrapping algorithm: ``Base64(Enc_IWK(ESK) || Enc_ESK(TAK))``."""

    name: str
    wrapping_key_spec: str
    esk_bytes: int
    esk_cipher: str
    tak_cipher: str


WRAPPING_ALGORITHMS: dict[str, WrappingAlgorithm] = {
    a.name: a
    for a in (
        WrappingAlgorithm(
            name=RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD,
            wrapping_key_spec="RSA_2048",
            esk_bytes=32,
            esk_cipher="RSA-OAEP (SHA-256, MGF1-SHA-256, empty label)",
            tak_cipher="AES-256-ECB, PKCS#7 padding",
        ),
        WrappingAlgorithm(
            name=SM2PKE_SM4_ECB,
            wrapping_key_spec="EC_SM2",
            esk_bytes=16,
            esk_cipher="SM2 public-key encryption, C1C3C2, raw",
            tak_cipher="SM4-ECB, no padding",
        ),
    )
}


@dataclass(frozen=True)
class KeySpec:
    """One asymmetric key spec KMS can hold imported material for."""

    name: str
    family: str  # "RSA" or "EC"
    rsa_bits: int | None
    curve: str | None  # "P-256", "secp256k1" or "SM2"
    usages: tuple[str, ...]
    protection_levels: tuple[str, ...]
    wrapping_algorithm: str
    material_encoding: str
    sign_algorithms: tuple[str, ...]
    encrypt_algorithms: tuple[str, ...]

    @property
    def wrapping(self) -> WrappingAlgorithm:
        return WRAPPING_ALGORITHMS[self.wrapping_algorithm]

    @property
    def wrapping_key_spec(self) -> str:
        return self.wrapping.wrapping_key_spec

    def allows_usage(self, usage: str) -> bool:
        return usage in self.usages

    def allows_protection_level(self, level: str) -> bool:
        return level in self.protection_levels


_RSA_SIGN = ("RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256")
_RSA_ENCRYPT = ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1")
_BOTH_LEVELS = (SOFTWARE, HSM)


def _rsa(bits: int, levels: tuple[str, ...] = _BOTH_LEVELS) -> KeySpec:
    return KeySpec(
        name=f"RSA_{bits}",
        family="RSA",
        rsa_bits=bits,
        curve=None,
        usages=(ENCRYPT_DECRYPT, SIGN_VERIFY),
        protection_levels=levels,
        wrapping_algorithm=RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD,
        material_encoding=PKCS8_DER,
        sign_algorithms=_RSA_SIGN,
        encrypt_algorithms=_RSA_ENCRYPT,
    )


def _ec(name: str, curve: str) -> KeySpec:
    return KeySpec(
        name=name,
        family="EC",
        rsa_bits=None,
        curve=curve,
        usages=(SIGN_VERIFY,),
        protection_levels=_BOTH_LEVELS,
        wrapping_algorithm=RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD,
        material_encoding=PKCS8_DER,
        sign_algorithms=("ECDSA_SHA_256",),
        encrypt_algorithms=(),
    )


KEY_SPECS: dict[str, KeySpec] = {
    s.name: s
    for s in (
        # The seed page: software-protected keys take RSA_2048, RSA_3072, EC_P256, EC_P256K;
        # hardware-protected keys add RSA_4096 (and EC_SM2, as its Java sample shows).
        _rsa(2048),
        _rsa(3072),
        _rsa(4096, (HSM,)),
        _ec("EC_P256", "P-256"),
        _ec("EC_P256K", "secp256k1"),
        # SM2 lives only on hardware instances and is wrapped with SM2 itself.
        KeySpec(
            name="EC_SM2",
            family="EC",
            rsa_bits=None,
            curve="SM2",
            usages=(ENCRYPT_DECRYPT, SIGN_VERIFY),
            protection_levels=(HSM,),
            wrapping_algorithm=SM2PKE_SM4_ECB,
            material_encoding=RAW_SM2_D,
            sign_algorithms=("SM2DSA",),
            encrypt_algorithms=("SM2PKE",),
        ),
    )
}

# Which specs each protection level allows (derived, so it cannot drift from KEY_SPECS).
SPECS_BY_PROTECTION_LEVEL: dict[str, tuple[str, ...]] = {
    level: tuple(s.name for s in KEY_SPECS.values() if level in s.protection_levels)
    for level in PROTECTION_LEVELS
}

# Specs only a hardware (HSM) instance takes.
HARDWARE_ONLY: frozenset[str] = frozenset(
    s.name for s in KEY_SPECS.values() if SOFTWARE not in s.protection_levels
)


def key_spec(name: str) -> KeySpec:
    """Return the spec called ``name``; raise ``InputError`` naming the valid ones otherwise."""
    try:
        return KEY_SPECS[name]
    except KeyError:
        raise InputError(
            f"unsupported key spec {name!r}; expected one of {', '.join(KEY_SPECS)}"
        ) from None


def wrapping_algorithm(name: str) -> WrappingAlgorithm:
    """Return the wrapping algorithm called ``name``; raise ``InputError`` otherwise."""
    try:
        return WRAPPING_ALGORITHMS[name]
    except KeyError:
        raise WrappingError(
            f"unsupported wrapping algorithm {name!r}; "
            f"expected one of {', '.join(WRAPPING_ALGORITHMS)}"
        ) from None
