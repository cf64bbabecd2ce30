"""Import, then verify: the one way material enters KMS, for enrollment and re-establishment.

    GetParametersForImport -> wrap -> ImportKeyMaterial
        (a fresh token and one retry if KMS refused the token as expired or invalid)
    -> verify.check_import (the one rule: state Enabled or Disabled, expiry no earlier than
       ours minus CONCURRENT_EXPIRY_SLACK, public key and a canary for an Enabled key)

A refusal of the material itself (``MATERIAL_REFUSED``) is ``MaterialMismatch``: KMS holds other
material for this key, and no retry can change that. ``enroll`` and ``reestablish`` call
``import_and_verify``; nothing else calls ImportKeyMaterial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..crypto.material import PrivateKeyMaterial
from ..crypto.wrapping import wrap_key_material
from ..domain.errors import MaterialMismatch
from ..domain.model import KeyInfo
from ..gateway.kms.errors import KmsApiError
from ..gateway.kms.types import ImportParameters
from .verify import ImportCheck, check_import

if TYPE_CHECKING:
    from ..gateway.kms.gateway import KmsGateway

# How KMS refuses material other than the key's first: InvalidKeyMaterial is the likely code,
# but it is not documented (docs/FIDELITY.md), so the generic refusals count as well. The
# agent has already checked the material against the sealed fingerprint when it gets here.
MATERIAL_REFUSED = frozenset(
    {"InvalidKeyMaterial", "InvalidParameter", "Rejected.UnsupportedOperation"}
)
# The import token was spent or timed out (24 hours): a fresh one, once.
TOKEN_REFUSED = frozenset({"ExpiredImportToken", "InvalidImportToken"})


def import_once(
    gateway: KmsGateway,
    key: KeyInfo,
    material: PrivateKeyMaterial,
    expire_unix: int,
    params: ImportParameters | None = None,
    *,
    before_retry: Callable[[], None] | None = None,
) -> list[str]:
    """GetParametersForImport -> wrap -> ImportKeyMaterial; a fresh token once if it expired.

    ``params``: import parameters already fetched for this key (used on the first attempt).
    ``before_retry`` runs before that second attempt and may raise to stop it: re-establishing
    passes the hold re-check, so a hold set while the first token was spent still wins.
    Returns the request ids. A refusal of the material (``MATERIAL_REFUSED``) becomes
    ``MaterialMismatch``: KMS holds other material for this key, and no retry can change that.
    """
    spec = material.spec
    request_ids: list[str] = []
    for attempt in (1, 2):
        if params is None or attempt > 1:
            params = gateway.get_parameters_for_import(
                key.key_id, spec.wrapping_algorithm, spec.wrapping_key_spec
            )
        request_ids.append(params.request_id)
        wrapped = wrap_key_material(
            material.import_bytes(), params.public_key, spec.wrapping_algorithm
        )
        try:
            request_ids.append(
                gateway.import_key_material(key.key_id, wrapped, params.import_token, expire_unix)
            )
            return request_ids
        except KmsApiError as exc:
            if exc.code in MATERIAL_REFUSED:
                raise MaterialMismatch(
                    key.key_id,
                    f"KMS (it refused the material with {exc.code}: the key is bound to other "
                    "material)",
                    material.fingerprint,
                    "unknown",
                ) from None
            if exc.code in TOKEN_REFUSED and attempt == 1:
                if before_retry is not None:
                    before_retry()
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Imported:
    """An import that KMS took and the check after it passed."""

    request_ids: tuple[str, ...]  # GetParametersForImport and ImportKeyMaterial
    check: ImportCheck  # what the check proved; ``check.key`` is DescribeKey after the import


def import_and_verify(
    gateway: KmsGateway,
    key: KeyInfo,
    material: PrivateKeyMaterial,
    expire_unix: int,
    *,
    fingerprint_sealed: str,
    params: ImportParameters | None = None,
    before_retry: Callable[[], None] | None = None,
    identity_checked: bool = False,
    on_imported: Callable[[list[str]], None] | None = None,
) -> Imported:
    """Import ``material`` into ``key`` with ``expire_unix``, then check it with the one rule.

    ``on_imported`` gets the import's request ids once KMS took the material, before the check
    (callers report the step and keep the ids should the check fail). ``identity_checked``: the
    caller compared KMS's public key with ``fingerprint_sealed`` this run, before the import.
    Raises ``MaterialMismatch``, ``KmsApiError``/``KmsUnavailable``, ``ExecutionError`` or
    ``CanaryFailed``; whatever ``before_retry`` raises stops the retry.
    """
    request_ids = import_once(
        gateway, key, material, expire_unix, params, before_retry=before_retry
    )
    if on_imported is not None:
        on_imported(list(request_ids))
    check = check_import(
        gateway,
        key.key_id,
        expire_unix=expire_unix,
        fingerprint_sealed=fingerprint_sealed,
        public_key_der=material.public_key_der,
        identity_checked=identity_checked,
    )
    return Imported(tuple(request_ids), check)
