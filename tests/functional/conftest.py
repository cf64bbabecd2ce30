"""Functional tier: our code and the real Alibaba Cloud SDK against aliyun-local over HTTP."""

from __future__ import annotations

import os

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.models import Config

from aliyun_local.server import LocalServer
from byok_keeper.crypto.material import PrivateKeyMaterial
from byok_keeper.crypto.specs import HARDWARE_ONLY
from byok_keeper.crypto.wrapping import wrap_key_material

# The SDK sends through proxies even for loopback addresses.
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_name, None)


def make_client(server: LocalServer, **overrides) -> Client:
    config = dict(
        access_key_id=server.access_key_id,
        access_key_secret=server.access_key_secret,
        endpoint=server.endpoint,
        protocol="http",
        region_id=server.region,
        read_timeout=30_000,
        connect_timeout=5_000,
    )
    config.update(overrides)
    return Client(Config(**config))


@pytest.fixture(scope="module")
def emulator(kms_profile):
    """One emulator per test module and profile (state is reset before each test by ``kms``)."""
    with LocalServer(profile=kms_profile) as server:
        yield server


@pytest.fixture
def kms(emulator) -> Client:
    emulator.reset()
    return make_client(emulator)


def hardware_takes_imports(server: LocalServer, spec: str = "EC_SM2") -> None:
    """For a test about a hardware-only spec's own cryptography (not about the disputed answer):
    let the emulator's hardware instance take imported asymmetric material, the answer of the
    seed's later steps, which is not aliyun-local's default (docs/FIDELITY.md). ``reset``
    undoes it."""
    if spec in HARDWARE_ONLY:
        server.emulator.kms.settings.update({"hardware_accepts_asymmetric_import": True})


def create_external_key(
    client: Client, spec: str, usage: str = "SIGN/VERIFY", instance: str | None = None
) -> str:
    if instance is None:
        instance = "kst-local-hardware" if spec in HARDWARE_ONLY else "kst-local-software"
    response = client.create_key(
        kms_models.CreateKeyRequest(
            key_spec=spec, key_usage=usage, origin="EXTERNAL", dkmsinstance_id=instance
        )
    )
    return response.body.key_metadata.key_id


def import_material(
    client: Client, key_id: str, material: PrivateKeyMaterial, expire_unix: int = 0
) -> kms_models.GetParametersForImportResponseBody:
    """GetParametersForImport -> wrap -> ImportKeyMaterial, all through the SDK."""
    spec = material.spec
    params = client.get_parameters_for_import(
        kms_models.GetParametersForImportRequest(
            key_id=key_id,
            wrapping_algorithm=spec.wrapping_algorithm,
            wrapping_key_spec=spec.wrapping_key_spec,
        )
    ).body
    wrapped = wrap_key_material(material.import_bytes(), params.public_key, spec.wrapping_algorithm)
    client.import_key_material(
        kms_models.ImportKeyMaterialRequest(
            key_id=key_id,
            encrypted_key_material=wrapped,
            import_token=params.import_token,
            key_material_expire_unix=expire_unix,
        )
    )
    return params


def describe(client: Client, key_id: str) -> kms_models.DescribeKeyResponseBodyKeyMetadata:
    return client.describe_key(kms_models.DescribeKeyRequest(key_id=key_id)).body.key_metadata


def key_version(client: Client, key_id: str) -> str:
    """The KeyVersionId of an asymmetric key, from ListKeyVersions (DescribeKey documents
    PrimaryKeyVersion for symmetric keys only)."""
    body = client.list_key_versions(kms_models.ListKeyVersionsRequest(key_id=key_id)).body
    (version,) = body.key_versions.key_version
    return version.key_version_id


def make_gateway(server: LocalServer, allowlist, *, read_timeout_ms: int = 30_000, **kwargs):
    """Our KMS gateway on the real SDK, pointed at the emulator (no sleeping in retries)."""
    from byok_keeper.gateway.kms import KmsGateway, RequestBudget, build_client, static_credential

    client = build_client(
        region=server.region,
        endpoint=f"http://{server.endpoint}",
        credential=static_credential(server.access_key_id, server.access_key_secret),
        read_timeout_ms=read_timeout_ms,
    )
    kwargs.setdefault("sleep", lambda _s: None)
    kwargs.setdefault("budget", RequestBudget(1000, 1000))
    return KmsGateway(client, allowlist, region=server.region, **kwargs)


INSTANCE = dict.fromkeys(HARDWARE_ONLY, "kst-local-hardware")


def build_world(server: LocalServer, directory, **gateway_kwargs):
    """(emulator, vault, enrolling gateway, sweeping gateway) over a file vault in ``directory``."""
    from byok_keeper.gateway.kms import ENROLL, SWEEP
    from byok_keeper.vault import FileStore, LocalKeySealer, Vault
    from byok_keeper.vault.sealers import new_seal_key_file

    new_seal_key_file(directory / "seal.key")
    vault = Vault(FileStore(directory / "vault"), LocalKeySealer.from_file(directory / "seal.key"))
    enroller = make_gateway(server, ENROLL, **gateway_kwargs)
    return server, vault, enroller, enroller.with_allowlist(SWEEP)


def create_request(spec="EC_P256", usage="SIGN/VERIFY"):
    """``enroll --create`` for ``spec`` on the instance the emulator accepts it on."""
    from byok_keeper.core.enroll import CreateRequest

    return CreateRequest(spec, usage, INSTANCE.get(spec, "kst-local-software"))


def enroll_key(world, spec="EC_P256", lease="30d", usage="SIGN/VERIFY"):
    """Enroll a freshly generated key on a new EXTERNAL key; return (key id, material).

    Under a profile whose hardware instance refuses imported material, a hardware-only spec
    is replaced by its software stand-in (tests.conftest.SOFTWARE_STAND_IN)."""
    from byok_keeper.core.enroll import enroll
    from byok_keeper.crypto.material import generate_material
    from byok_keeper.domain.lease import parse_lease
    from tests.conftest import importable_spec

    server, vault, enroller, _ = world
    spec = importable_spec(server, spec)
    material = generate_material(spec)
    result = enroll(
        enroller,
        vault,
        material,
        lease=parse_lease(lease),
        create=create_request(spec, usage),
    )
    return result.key_id, material


def fc_context(server: LocalServer, request_id: str = "req-1"):
    """What FC passes a handler: request id, region, account and the function role's STS
    credentials (as aliyun-local issues them)."""
    import types

    return types.SimpleNamespace(
        request_id=request_id, region=server.region, account_id="1234567890123456",
        credentials=types.SimpleNamespace(**server.emulator.fc_role),
        function=types.SimpleNamespace(name="reimport"), service=types.SimpleNamespace(name="b"),
    )  # fmt: skip


def skew_local_clock(mocker, seconds: float) -> None:
    """Move the clock the SDK signs requests with (a true edge) by ``seconds``."""
    from datetime import datetime, timedelta, timezone

    from alibabacloud_tea_openapi.utils import Utils

    def skewed():
        moment = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    mocker.patch.object(Utils, "get_timestamp", side_effect=skewed)
