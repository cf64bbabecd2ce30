"""The asymmetric key specs the emulated KMS holds, as Alibaba Cloud documents them.

Written here from KMS's documentation (docs/FIDELITY.md, "Specs per protection level" and
"Wrapping algorithms and formats"), not taken from ``byok_keeper``: the agent keeps its own
table, and tests/unit/test_emulator_sm2.py compares the two, so a wrong row shows as a
disagreement instead of passing on both sides.

* Specs per protection level: a software instance takes RSA_2048, RSA_3072, EC_P256 and
  EC_P256K; a hardware (HSM) instance takes those and RSA_4096 and EC_SM2.
* Usages: RSA and EC_SM2 keys encrypt/decrypt or sign/verify; EC_P256 and EC_P256K only sign.
* Algorithms (AsymmetricSign, AsymmetricEncrypt): RSA_PSS_SHA_256 and RSA_PKCS1_SHA_256,
  RSAES_OAEP_SHA_256 and RSAES_OAEP_SHA_1; ECDSA_SHA_256; SM2DSA and SM2PKE.
* Import (GetParametersForImport): EC_SM2 material is wrapped with SM2PKE_SM4_ECB under an
  EC_SM2 wrapping key, every other spec's with RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD under
  an RSA_2048 one.
"""

from __future__ import annotations

from dataclasses import dataclass

SOFTWARE, HSM = "SOFTWARE", "HSM"
ENCRYPT_DECRYPT, SIGN_VERIFY = "ENCRYPT/DECRYPT", "SIGN/VERIFY"
RSA_WRAPPING = "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"
SM2_WRAPPING = "SM2PKE_SM4_ECB"
WRAPPING_KEY_SPECS = {RSA_WRAPPING: "RSA_2048", SM2_WRAPPING: "EC_SM2"}


@dataclass(frozen=True)
class KeySpec:
    name: str
    rsa_bits: int | None
    curve: str | None  # "P-256", "secp256k1" or "SM2"; None for RSA
    usages: tuple[str, ...]
    protection_levels: tuple[str, ...]
    sign_algorithms: tuple[str, ...]
    encrypt_algorithms: tuple[str, ...]

    @property
    def wrapping_algorithm(self) -> str:
        return SM2_WRAPPING if self.curve == "SM2" else RSA_WRAPPING

    @property
    def wrapping_key_spec(self) -> str:
        return WRAPPING_KEY_SPECS[self.wrapping_algorithm]


_BOTH = (ENCRYPT_DECRYPT, SIGN_VERIFY)
_RSA_SIGN = ("RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256")
_RSA_ENCRYPT = ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1")
_ANY_INSTANCE, _HARDWARE = (SOFTWARE, HSM), (HSM,)

# name, RSA bits, curve, usages, protection levels, sign algorithms, encrypt algorithms
_TABLE = (
    ("RSA_2048", 2048, None, _BOTH, _ANY_INSTANCE, _RSA_SIGN, _RSA_ENCRYPT),
    ("RSA_3072", 3072, None, _BOTH, _ANY_INSTANCE, _RSA_SIGN, _RSA_ENCRYPT),
    ("RSA_4096", 4096, None, _BOTH, _HARDWARE, _RSA_SIGN, _RSA_ENCRYPT),
    ("EC_P256", None, "P-256", (SIGN_VERIFY,), _ANY_INSTANCE, ("ECDSA_SHA_256",), ()),
    ("EC_P256K", None, "secp256k1", (SIGN_VERIFY,), _ANY_INSTANCE, ("ECDSA_SHA_256",), ()),
    ("EC_SM2", None, "SM2", _BOTH, _HARDWARE, ("SM2DSA",), ("SM2PKE",)),
)
KEY_SPECS: dict[str, KeySpec] = {row[0]: KeySpec(*row) for row in _TABLE}
