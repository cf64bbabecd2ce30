"""The seed procedure end to end: the real SDK asks aliyun-local for import parameters, the
seed's OpenSSL commands wrap the material, the SDK imports it, KMS signs, OpenSSL verifies."""

from __future__ import annotations

import base64
import hashlib

import pytest
from alibabacloud_kms20160120 import models as km

from tests import oracle
from tests.conftest import openssl
from tests.functional.conftest import (
    create_external_key,
    describe,
    hardware_takes_imports,
    key_version,
)

pytestmark = pytest.mark.openssl


@pytest.mark.parametrize("bits", [2048, 4096])
def test_seed_openssl_pipeline_imports_and_kms_signs_for_openssl(emulator, kms, tmp_path, bits):
    hardware_takes_imports(emulator, f"RSA_{bits}")  # the seed imports into hardware instances
    key_id = create_external_key(kms, f"RSA_{bits}")
    params = kms.get_parameters_for_import(
        km.GetParametersForImportRequest(
            key_id=key_id,
            wrapping_algorithm="RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD",
            wrapping_key_spec="RSA_2048",
        )
    ).body

    # Step 1-3 of the seed procedure, with OpenSSL only.
    (tmp_path / "PublicKey.der").write_bytes(base64.b64decode(params.public_key))
    openssl(
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        tmp_path / "PublicKey.der",
        "-out",
        tmp_path / "PublicKey.pem",
    )
    (tmp_path / "TakPrivPkcs1.pem").write_bytes(openssl("genrsa", str(bits)))
    openssl(
        "pkcs8",
        "-topk8",
        "-inform",
        "PEM",
        "-in",
        tmp_path / "TakPrivPkcs1.pem",
        "-outform",
        "DER",
        "-out",
        tmp_path / "TakPrivPkcs8.bin",
        "-nocrypt",
    )
    openssl("rand", "-out", tmp_path / "EphemeralSymmetricKey.bin", "32")
    openssl(
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        tmp_path / "PublicKey.pem",
        "-in",
        tmp_path / "EphemeralSymmetricKey.bin",
        *oracle.OAEP_SHA256,
        "-out",
        tmp_path / "EphemeralSymmetricKeyCipher.bin",
    )
    esk_hex = (tmp_path / "EphemeralSymmetricKey.bin").read_bytes().hex()
    openssl(
        "enc",
        "-aes-256-ecb",
        "-in",
        tmp_path / "TakPrivPkcs8.bin",
        "-K",
        esk_hex,
        "-out",
        tmp_path / "TakCipher.bin",
    )
    wrapped = base64.b64encode(
        (tmp_path / "EphemeralSymmetricKeyCipher.bin").read_bytes()
        + (tmp_path / "TakCipher.bin").read_bytes()
    ).decode()
    if bits == 4096:
        assert len(wrapped) > 3000  # the ~4.5 KB request line the server must accept

    kms.import_key_material(
        km.ImportKeyMaterialRequest(
            key_id=key_id,
            encrypted_key_material=wrapped,
            import_token=params.import_token,
            key_material_expire_unix=0,
        )
    )
    meta = describe(kms, key_id)
    assert meta.key_state == "Enabled"

    message = b"signed by aliyun-local, verified by openssl"
    (tmp_path / "msg").write_bytes(message)
    signature = kms.asymmetric_sign(
        km.AsymmetricSignRequest(
            key_id=key_id,
            key_version_id=key_version(kms, key_id),
            algorithm="RSA_PKCS1_SHA_256",
            digest=base64.b64encode(hashlib.sha256(message).digest()).decode(),
        )
    ).body.value
    (tmp_path / "sig").write_bytes(base64.b64decode(signature))
    openssl(
        "rsa", "-in", tmp_path / "TakPrivPkcs1.pem", "-pubout", "-out", tmp_path / "tak_pub.pem"
    )
    out = openssl(
        "dgst",
        "-sha256",
        "-verify",
        tmp_path / "tak_pub.pem",
        "-signature",
        tmp_path / "sig",
        tmp_path / "msg",
    )
    assert b"Verified OK" in out
