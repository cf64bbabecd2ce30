"""Building dependencies from settings: one place, used by the CLI, FC handlers and the daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..gateway.kms import Allowlist, KmsGateway, RequestBudget, build_client
from ..vault import Vault, build_sealer, build_store
from .settings import Settings

if TYPE_CHECKING:
    from ..gateway.kms.gateway import Renewal


def build_gateway(
    settings: Settings,
    allowlist: Allowlist,
    *,
    credential: Any = None,
    renewal: Renewal | None = None,
) -> KmsGateway:
    """The KMS gateway under ``allowlist``, signed with ``credential`` (else a profile's or the
    default chain). ``renewal``: the assumed role behind ``credential``
    (``sts.AssumedRoleProvider``, passed by ``multi.target_deps``), dropped and assumed anew
    when KMS refuses its credentials as expired."""
    if credential is None and settings.profile:
        credential = profile_credential(settings.profile)
    client = build_client(
        region=settings.require_region(),
        endpoint=settings.kms_endpoint,
        credential=credential,
        read_timeout_ms=round(settings.kms_timeout * 1000),
    )
    # One of ``budget_instances`` processes (a capped FC fan-out): a slice of the share each.
    budgets = settings.instance_budgets()
    budget = RequestBudget(
        budgets["read_qps"],
        budgets["write_qps"],
        create_qps=budgets["create_qps"],
        crypto_qps=budgets["crypto_qps"],
        tags_qps=budgets["tags_qps"],
    )
    return KmsGateway(
        client,
        allowlist,
        region=settings.require_region(),
        budget=budget,
        renewal=renewal,
    )


def profile_credential(name: str) -> Any:
    """Credentials from the aliyun CLI profile ``name`` (``~/.aliyun/config.json``), through
    alibabacloud-credentials' own profile provider."""
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.provider.cli_profile import CLIProfileCredentialsProvider

    return CredentialClient(provider=CLIProfileCredentialsProvider(profile_name=name))


def build_vault(settings: Settings, gateway: KmsGateway) -> Vault:
    store = build_store(settings.vault or "", gateway)
    sealer = build_sealer(
        seal_key_file=settings.seal_key_file,
        seal_kms_key_id=settings.seal_kms_key_id,
        seal_pkcs11=settings.seal_pkcs11,
        gateway=gateway,
    )
    return Vault(store, sealer)
