"""What the functional tests of targets share (issue 16): two accounts of aliyun-local, the
second reached through STS AssumeRole; the base credentials of the first account; a settings
file with the targets ``hz`` (account A, long-term keys) and ``fra`` (account B, its role)."""

from __future__ import annotations

from pathlib import Path

from alibabacloud_credentials.utils import auth_util

from aliyun_local.server import LocalServer
from byok_keeper.vault.sealers import new_seal_key_file

A, B = "1111111111111111", "2222222222222222"
R1, R2 = "cn-hangzhou", "eu-central-1"


def base_credentials(monkeypatch, tmp_path: Path) -> None:
    """No BYOK_* setting from the environment, a fresh seal key in ``tmp_path``, and the first
    account's long-term keys as the base credentials (the credential chain read the
    environment at import, so its module values are set)."""
    new_seal_key_file(tmp_path / "seal.key")
    for name in ("BYOK_KMS_ENDPOINT", "BYOK_VAULT", "BYOK_SEAL_KEY_FILE", "BYOK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(auth_util, "environment_access_key_id", "local")
    monkeypatch.setattr(auth_util, "environment_access_key_secret", "local-secret")
    monkeypatch.setattr(auth_util, "environment_security_token", None)


def targets_toml(cloud: LocalServer, tmp_path: Path, *, fra_region: str = R2) -> str:
    """The settings text: one file vault and seal key in ``tmp_path``, ``hz`` in R1 and ``fra``
    in ``fra_region`` through its role."""
    return f"""
vault = "file://{tmp_path / "vault"}"
seal_key_file = "{tmp_path / "seal.key"}"

[[targets]]
name = "hz"
region = "{R1}"
account_id = "{A}"
kms_endpoint = "http://{cloud.kms_endpoints[R1]}"

[[targets]]
name = "fra"
region = "{fra_region}"
account_id = "{B}"
role_arn = "acs:ram::{B}:role/byok-keeper"
kms_endpoint = "http://{cloud.kms_endpoints[fra_region]}"
sts_endpoint = "http://{cloud.sts_endpoint}"
"""


def load_world(cloud: LocalServer, tmp_path: Path, *, fra_region: str = R2):
    """``targets_toml`` written to ``tmp_path/byok.toml`` and read back:
    ``(path, settings, targets)``, the targets in file order (``hz``, ``fra``)."""
    from byok_keeper.core.settings import load_settings
    from byok_keeper.core.targets import load_targets

    path = tmp_path / "byok.toml"
    path.write_text(targets_toml(cloud, tmp_path, fra_region=fra_region))
    return path, load_settings({}, env={}, config_path=str(path)), load_targets(str(path), env={})


def enroll_in(settings, target, count: int = 1, lease: str = "30d") -> list[str]:
    """``count`` new EC_P256 keys enrolled in ``target`` (its own credentials, vault and KMS
    software instance) with ``lease``; their ids."""
    from byok_keeper.core.enroll import CreateRequest, enroll
    from byok_keeper.core.multi import target_deps
    from byok_keeper.crypto.material import generate_material
    from byok_keeper.domain.lease import parse_lease
    from byok_keeper.gateway.kms import ENROLL

    deps = target_deps(settings, target, ENROLL)
    create = CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software")
    return [
        enroll(deps.gateway, deps.require_vault(), generate_material("EC_P256"),
               lease=parse_lease(lease), create=create).key_id
        for _ in range(count)
    ]  # fmt: skip
