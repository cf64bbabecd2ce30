"""aliyun-local through the real SDK: crypto, secrets, listing, tags, auth, quotas, faults,
concurrency and the admin API."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import pytest
from alibabacloud_kms20160120 import models as km
from alibabacloud_tea_openapi import utils_models as um
from alibabacloud_tea_openapi.exceptions import (
    ClientException,
    ServerException,
    ThrottlingException,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from darabonba.runtime import RuntimeOptions

from aliyun_local.endpoints import kms as kms_endpoint
from aliyun_local.server import LocalServer
from byok_keeper.crypto import sm2
from byok_keeper.crypto.material import load_private_key
from tests.functional.conftest import (
    create_external_key,
    describe,
    hardware_takes_imports,
    import_material,
    key_version,
    make_client,
)


def _admin(server, method, path, body=None):
    req = urllib.request.Request(
        f"{server.url}/_local/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read()), resp.headers


def _imported(kms, target_keys, spec, usage="SIGN/VERIFY"):
    key_id = create_external_key(kms, spec, usage=usage)
    material = load_private_key(target_keys[spec], key_spec=spec)
    import_material(kms, key_id, material)
    return key_id, key_version(kms, key_id), material


# ---- real signatures and ciphertexts --------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"])
def test_rsa_signatures_are_real(kms, target_keys, algorithm):
    key_id, version, _ = _imported(kms, target_keys, "RSA_2048")
    digest = hashlib.sha256(b"canary").digest()
    sig = kms.asymmetric_sign(
        km.AsymmetricSignRequest(
            key_id=key_id,
            key_version_id=version,
            algorithm=algorithm,
            digest=base64.b64encode(digest).decode(),
        )
    ).body.value
    pub = ser.load_pem_public_key(
        kms.get_public_key(
            km.GetPublicKeyRequest(key_id=key_id, key_version_id=version)
        ).body.public_key.encode()
    )
    pad = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if algorithm == "RSA_PSS_SHA_256"
        else padding.PKCS1v15()
    )
    pub.verify(base64.b64decode(sig), digest, pad, utils.Prehashed(hashes.SHA256()))
    verify = kms.asymmetric_verify(
        km.AsymmetricVerifyRequest(
            key_id=key_id,
            key_version_id=version,
            algorithm=algorithm,
            digest=base64.b64encode(digest).decode(),
            value=sig,
        )
    ).body
    assert verify.value is True
    wrong = kms.asymmetric_verify(
        km.AsymmetricVerifyRequest(
            key_id=key_id,
            key_version_id=version,
            algorithm=algorithm,
            digest=base64.b64encode(bytes(32)).decode(),
            value=sig,
        )
    ).body
    assert wrong.value is False


def test_ecdsa_and_sm2dsa_signatures_are_real(emulator, kms, target_keys):
    hardware_takes_imports(emulator)
    key_id, version, material = _imported(kms, target_keys, "EC_P256K")
    digest = hashlib.sha256(b"canary").digest()
    sig = kms.asymmetric_sign(
        km.AsymmetricSignRequest(
            key_id=key_id,
            key_version_id=version,
            algorithm="ECDSA_SHA_256",
            digest=base64.b64encode(digest).decode(),
        )
    ).body.value
    pub = ser.load_der_public_key(material.public_key_der)
    pub.verify(base64.b64decode(sig), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    key_id, version, material = _imported(kms, target_keys, "EC_SM2")
    pub = sm2.Sm2PublicKey.from_spki_der(material.public_key_der)
    e = sm2.user_digest(pub, b"canary")
    sig = kms.asymmetric_sign(
        km.AsymmetricSignRequest(
            key_id=key_id,
            key_version_id=version,
            algorithm="SM2DSA",
            digest=base64.b64encode(e).decode(),
        )
    ).body.value
    sm2.verify_digest(pub, e, *sm2.signature_from_der(base64.b64decode(sig)))


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [("RSA_3072", "RSAES_OAEP_SHA_256"), ("RSA_2048", "RSAES_OAEP_SHA_1"), ("EC_SM2", "SM2PKE")],
)
def test_asymmetric_encrypt_decrypt_round_trip(emulator, kms, target_keys, spec, algorithm):
    hardware_takes_imports(emulator, spec)
    key_id, version, _ = _imported(kms, target_keys, spec, usage="ENCRYPT/DECRYPT")
    plaintext = base64.b64encode(b"canary plaintext").decode()
    ct = kms.asymmetric_encrypt(
        km.AsymmetricEncryptRequest(
            key_id=key_id, key_version_id=version, algorithm=algorithm, plaintext=plaintext
        )
    ).body.ciphertext_blob
    pt = kms.asymmetric_decrypt(
        km.AsymmetricDecryptRequest(
            key_id=key_id, key_version_id=version, algorithm=algorithm, ciphertext_blob=ct
        )
    ).body.plaintext
    assert pt == plaintext


def test_sign_with_the_wrong_algorithm_or_usage_is_refused(kms, target_keys):
    key_id, version, _ = _imported(kms, target_keys, "EC_P256")
    with pytest.raises(ClientException) as exc:
        kms.asymmetric_sign(
            km.AsymmetricSignRequest(
                key_id=key_id,
                key_version_id=version,
                algorithm="RSA_PSS_SHA_256",
                digest=base64.b64encode(bytes(32)).decode(),
            )
        )
    assert exc.value.code == "InvalidParameter"


# ---- symmetric keys and secrets -------------------------------------------------------------


def test_data_keys_are_bound_to_their_encryption_context(kms):
    key_id = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    # The SDK takes EncryptionContext as a dict and sends it as a JSON object string.
    ctx = {"byok-keeper:key": "key-1", "fingerprint": "ab" * 32}
    dk = kms.generate_data_key(
        km.GenerateDataKeyRequest(key_id=key_id, key_spec="AES_256", encryption_context=ctx)
    ).body
    assert len(base64.b64decode(dk.plaintext)) == 32
    out = kms.decrypt(
        km.DecryptRequest(ciphertext_blob=dk.ciphertext_blob, encryption_context=ctx)
    ).body
    assert (out.plaintext, out.key_id) == (dk.plaintext, key_id)
    for bad in (None, {"byok-keeper:key": "key-2", "fingerprint": "ab" * 32}):
        with pytest.raises(ClientException) as exc:
            kms.decrypt(
                km.DecryptRequest(ciphertext_blob=dk.ciphertext_blob, encryption_context=bad)
            )
        assert exc.value.code == "InvalidCiphertext"
    kms.disable_key(km.DisableKeyRequest(key_id=key_id))
    with pytest.raises(ClientException) as exc:
        kms.decrypt(km.DecryptRequest(ciphertext_blob=dk.ciphertext_blob, encryption_context=ctx))
    assert (exc.value.code, exc.value.status_code) == ("Rejected.Disabled", 409)


def test_encrypt_decrypt_round_trip(kms):
    key_id = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    blob = kms.encrypt(km.EncryptRequest(key_id=key_id, plaintext="aGVsbG8=")).body
    assert kms.decrypt(km.DecryptRequest(ciphertext_blob=blob.ciphertext_blob)).body.plaintext == (
        "aGVsbG8="
    )


def test_secrets_versions_stages_and_idempotency(kms):
    def put(version, data):
        return kms.put_secret_value(
            km.PutSecretValueRequest(
                secret_name="byok/key-1",
                secret_data=data,
                version_id=version,
                secret_data_type="text",
            )
        )

    def get(**kw):
        return kms.get_secret_value(km.GetSecretValueRequest(secret_name="byok/key-1", **kw)).body

    kms.create_secret(
        km.CreateSecretRequest(
            secret_name="byok/key-1", secret_data="v1", version_id="1", secret_data_type="text"
        )
    )
    assert (get().secret_data, get().version_id) == ("v1", "1")
    put("2", "v2")
    assert get().secret_data == "v2"
    assert get(version_stage="ACSPrevious").secret_data == "v1"
    put("2", "v2")  # same version, same value: idempotent
    with pytest.raises(ClientException) as exc:
        put("2", "different")
    assert (exc.value.code, exc.value.status_code) == ("Rejected.ResourceExist", 409)
    with pytest.raises(ClientException) as exc:
        kms.create_secret(
            km.CreateSecretRequest(secret_name="byok/key-1", secret_data="x", version_id="9")
        )
    assert exc.value.code == "Rejected.ResourceExist"
    with pytest.raises(ClientException) as exc:
        kms.get_secret_value(km.GetSecretValueRequest(secret_name="byok/nope"))
    assert (exc.value.code, exc.value.status_code) == ("Forbidden.ResourceNotFound", 404)
    listed = kms.list_secrets(
        km.ListSecretsRequest(filters=json.dumps([{"Key": "SecretName", "Values": ["byok/"]}]))
    ).body
    assert [s.secret_name for s in listed.secret_list.secret] == ["byok/key-1"]
    described = kms.describe_secret(km.DescribeSecretRequest(secret_name="byok/key-1")).body
    assert described.secret_name == "byok/key-1"


def test_secret_data_travels_in_the_body_not_the_url(emulator, kms, mocker):
    spy = mocker.spy(kms_endpoint, "handle")
    kms.create_secret(
        km.CreateSecretRequest(secret_name="s", secret_data="in-the-body", version_id="1")
    )
    _emulator, _method, raw_path, _headers, body = spy.call_args.args
    assert "in-the-body" not in raw_path and b"in-the-body" in body


# ---- listing and tags -----------------------------------------------------------------------


def test_list_keys_pages_and_filters(kms):
    ids = []
    for i in range(7):
        tags = json.dumps([{"TagKey": "team", "TagValue": "red" if i % 2 else "blue"}])
        ids.append(kms.create_key(km.CreateKeyRequest(tags=tags)).body.key_metadata.key_id)
    page = kms.list_keys(km.ListKeysRequest(page_number=2, page_size=3)).body
    assert (page.total_count, page.page_number, [k.key_id for k in page.keys.key]) == (
        7,
        2,
        ids[3:6],
    )
    red = kms.list_keys(
        km.ListKeysRequest(
            page_size=100,
            filters=json.dumps(
                [{"Key": "TagKey", "Values": ["team"]}, {"Key": "TagValue", "Values": ["red"]}]
            ),
        )
    ).body
    assert [k.key_id for k in red.keys.key] == ids[1::2]
    for size in (0, 101):
        with pytest.raises(ClientException) as exc:
            kms.list_keys(km.ListKeysRequest(page_size=size))
        assert exc.value.code == "InvalidParameter"
    with pytest.raises(ClientException):
        kms.list_keys(km.ListKeysRequest(filters=json.dumps([{"Key": "Origin", "Values": ["x"]}])))


def test_tags_add_list_remove_and_rules(kms):
    key_id = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    kms.tag_resource(
        km.TagResourceRequest(
            key_id=key_id,
            tags=json.dumps([{"TagKey": "byok-keeper:hold", "TagValue": "incident-42"}]),
        )
    )
    tags = kms.list_resource_tags(km.ListResourceTagsRequest(key_id=key_id)).body.tags.tag
    assert [(t.tag_key, t.tag_value) for t in tags] == [("byok-keeper:hold", "incident-42")]
    untag = km.UntagResourceRequest(key_id=key_id, tag_keys=json.dumps(["byok-keeper:hold"]))
    kms.untag_resource(untag)
    assert not kms.list_resource_tags(km.ListResourceTagsRequest(key_id=key_id)).body.tags.tag
    with pytest.raises(ClientException):
        kms.tag_resource(
            km.TagResourceRequest(
                key_id=key_id, tags=json.dumps([{"TagKey": "aliyun:x", "TagValue": "y"}])
            )
        )
    too_many = [{"TagKey": f"t{i}", "TagValue": "v"} for i in range(21)]
    with pytest.raises(ClientException):
        kms.tag_resource(km.TagResourceRequest(key_id=key_id, tags=json.dumps(too_many)))


# ---- the wire: unknown actions, authentication ----------------------------------------------


def test_unknown_action_fails_loudly(kms):
    params = um.Params(
        action="DescribeRegionsX",
        version="2016-01-20",
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    with pytest.raises(ClientException) as exc:
        kms.call_api(params, um.OpenApiRequest(query={}), RuntimeOptions())
    assert (exc.value.code, exc.value.status_code) == ("InvalidAction.NotFound", 404)


def test_wrong_secret_and_unknown_access_key_are_refused(emulator, kms):
    with pytest.raises(ClientException) as exc:
        describe(make_client(emulator, access_key_secret="wrong"), "key-x")
    assert (exc.value.code, exc.value.status_code) == ("SignatureDoesNotMatch", 400)
    with pytest.raises(ClientException) as exc:
        describe(make_client(emulator, access_key_id="nobody"), "key-x")
    assert (exc.value.code, exc.value.status_code) == ("InvalidAccessKeyId.NotFound", 404)


def test_body_hash_and_unsigned_requests_are_refused(emulator, kms):
    for headers in (
        {"x-acs-action": "DescribeKey", "x-acs-version": "2016-01-20"},
        {
            "x-acs-action": "DescribeKey",
            "x-acs-version": "2016-01-20",
            "authorization": "ACS3-HMAC-SHA256 Credential=local,SignedHeaders=host,Signature=00",
            "x-acs-content-sha256": "0" * 64,
        },
    ):
        req = urllib.request.Request(f"{emulator.url}/?KeyId=x", method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 400
        assert json.loads(exc.value.read())["Code"] == "IncompleteSignature"


def test_sts_security_token_is_checked():
    with LocalServer(access_key_id="STS.local", security_tokens={"STS.local": "tok"}) as server:
        ok = make_client(server, security_token="tok")
        assert ok.list_keys(km.ListKeysRequest()).body.total_count == 0
        for token in ("forged", None):
            with pytest.raises(ClientException):
                make_client(server, security_token=token).list_keys(km.ListKeysRequest())


def test_older_rpc_v1_sdk_works(emulator, kms):
    from aliyunsdkcore.acs_exception.exceptions import ServerException as V1Error
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkkms.request.v20160120 import CreateKeyRequest, DescribeKeyRequest

    client = AcsClient(
        "local", "local-secret", "cn-hangzhou", port=int(emulator.endpoint.split(":")[1])
    )
    client.set_verify(False)

    def call(request):
        request.set_endpoint(emulator.endpoint.split(":")[0])
        request.set_protocol_type("http")
        return json.loads(client.do_action_with_exception(request))

    created = call(CreateKeyRequest.CreateKeyRequest())
    key_id = created["KeyMetadata"]["KeyId"]
    req = DescribeKeyRequest.DescribeKeyRequest()
    req.set_KeyId(key_id)
    assert call(req)["KeyMetadata"]["KeyState"] == "Enabled"
    assert describe(kms, key_id).key_id == key_id  # and visible to the current SDK
    bad = AcsClient("local", "wrong", "cn-hangzhou", port=int(emulator.endpoint.split(":")[1]))
    req.set_endpoint(emulator.endpoint.split(":")[0])
    req.set_protocol_type("http")
    with pytest.raises(V1Error) as exc:
        bad.do_action_with_exception(req)
    # The SDK turns SignatureDoesNotMatch into InvalidAccessKeySecret only when the server's
    # string to sign equals its own: proof that both canonicalise the request identically.
    assert exc.value.get_error_code() == "InvalidAccessKeySecret"
    assert exc.value.get_http_status() == 400


# ---- quotas, faults, concurrency ------------------------------------------------------------


def test_quota_answers_429_which_the_sdk_raises_as_throttling(emulator, kms):
    emulator.set_faults(read_qps=2)
    with pytest.raises(ThrottlingException) as exc:
        for _ in range(10):
            kms.list_keys(km.ListKeysRequest())
    assert exc.value.code == "Rejected.Throttling"
    assert exc.value.status_code == 429
    assert exc.value.retry_after > 0
    emulator.set_faults()
    kms.list_keys(km.ListKeysRequest())


def test_documented_quota_preset(emulator, kms):
    emulator.set_faults(quotas="documented")
    faults = emulator.emulator.faults.to_json()
    assert (faults["read_qps"], faults["write_qps"]) == (50.0, 30.0)


def test_fail_next_is_one_shot_per_entry(emulator, kms, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    emulator.set_faults(fail_next={"ImportKeyMaterial": ["ExpiredImportToken", "InternalFailure"]})
    with pytest.raises(ClientException) as exc:
        import_material(kms, key_id, material)
    assert exc.value.code == "ExpiredImportToken"
    with pytest.raises(ServerException) as exc:
        import_material(kms, key_id, material)
    assert (exc.value.code, exc.value.status_code) == ("InternalFailure", 500)
    import_material(kms, key_id, material)
    codes = [c["code"] for c in emulator.calls() if c["action"] == "ImportKeyMaterial"]
    assert codes == ["ExpiredImportToken", "InternalFailure", None]


def test_error_rate_gives_503_and_drop_closes_the_connection(emulator, kms):
    emulator.set_faults(error_rate=1.0)
    with pytest.raises(ServerException) as exc:
        kms.list_keys(km.ListKeysRequest())
    assert (exc.value.code, exc.value.status_code) == ("ServiceUnavailableTemporary", 503)
    emulator.set_faults(fail_next={"ListKeys": "DropConnection"})
    with pytest.raises(Exception) as exc:  # the SDK surfaces the transport error as it comes
        kms.list_keys(km.ListKeysRequest())
    assert not isinstance(exc.value, ClientException | ServerException)
    emulator.set_faults()
    assert kms.list_keys(km.ListKeysRequest()).body.total_count == 0


def test_200_concurrent_describe_key_calls(emulator, kms):
    key_id = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    clients = [make_client(emulator) for _ in range(20)]
    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(lambda i: describe(clients[i % 20], key_id).key_state, range(200)))
    assert results == ["Enabled"] * 200
    assert sum(c["action"] == "DescribeKey" for c in emulator.calls()) == 200


# ---- admin API ------------------------------------------------------------------------------


def test_admin_clock_moves_and_the_date_header_follows(emulator, kms):
    _status, before, _ = _admin(emulator, "GET", "clock")
    _status, after, headers = _admin(emulator, "POST", "clock", {"advance_seconds": 86400 * 3})
    delta = parsedate_to_datetime(headers["Date"]).timestamp() - emulator.now()
    assert abs(delta) < 2
    from aliyun_local.clock import parse_iso

    assert 86400 * 3 - 2 < parse_iso(after["now"]) - parse_iso(before["now"]) < 86400 * 3 + 2
    _admin(emulator, "POST", "clock", {"now": "2030-01-01T00:00:00Z"})
    assert _admin(emulator, "GET", "clock")[1]["now"].startswith("2030-01-01T00:00:0")
    with pytest.raises(urllib.error.HTTPError):
        _admin(emulator, "POST", "clock", {"now": "tomorrow"})


def test_admin_faults_calls_keys_and_reset(emulator, kms, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    params = import_material(kms, key_id, material)
    _s, view, _ = _admin(emulator, "GET", f"keys/{key_id}")
    assert (
        view["state"],
        view["origin"],
        view["key_spec"],
        view["material_fingerprint"],
        view["material_expire_time"],
        view["import_count"],
    ) == ("Enabled", "EXTERNAL", "EC_P256", material.fingerprint, None, 1)
    _s, calls, _ = _admin(emulator, "GET", "calls")
    assert [c["action"] for c in calls] == [
        "CreateKey",
        "GetParametersForImport",
        "ImportKeyMaterial",
    ]
    assert all(set(c) == {"action", "key_id", "status", "code"} for c in calls)
    assert params.import_token not in json.dumps(calls)
    _s, faults, _ = _admin(emulator, "POST", "faults", {"latency_ms": 5, "error_rate": 0.5})
    assert faults["latency_ms"] == 5
    _s, faults, _ = _admin(emulator, "POST", "faults", {})
    assert (faults["latency_ms"], faults["error_rate"], faults["read_qps"]) == (0, 0, None)
    _admin(emulator, "POST", "reset", {})
    with pytest.raises(ClientException):
        describe(kms, key_id)
    assert _admin(emulator, "GET", "calls")[1][-1]["action"] == "DescribeKey"
