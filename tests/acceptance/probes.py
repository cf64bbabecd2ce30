"""The steps of an acceptance run, one KMS behaviour each. Each records what KMS answered
(``Report.finding``, next to aliyun-local's default) and whether the agent coped
(``Report.check``). The agent's own code does the agent's work (enroll, reestablish,
import_once); the raw SDK client does what the agent never may (create the throwaway keys,
delete material, disable, schedule deletion).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from alibabacloud_kms20160120 import models as km
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException

from byok_keeper.core.enroll import enroll
from byok_keeper.core.importing import MATERIAL_REFUSED, import_once
from byok_keeper.core.reestablish import reestablish
from byok_keeper.crypto.material import PrivateKeyMaterial, generate_material
from byok_keeper.crypto.specs import SPECS_BY_PROTECTION_LEVEL
from byok_keeper.crypto.wrapping import wrap_key_material
from byok_keeper.domain.errors import InputError
from byok_keeper.domain.lease import parse_lease
from byok_keeper.domain.tags import HOLD_TAG
from byok_keeper.gateway.kms import KmsApiError, KmsGateway
from byok_keeper.vault import Vault

from .report import Report

ACCEPTANCE_TAG = "byok-keeper:acceptance"
STATES = "Key states and which calls each allows"
SPECS = "Specs per protection level"


@dataclass
class World:
    """What every step needs: the raw client, the agent's gateways, a throwaway vault."""

    client: Any  # alibabacloud_kms20160120 Client
    enroller: KmsGateway  # ENROLL allowlist
    sweeper: KmsGateway  # SWEEP allowlist
    holder: KmsGateway  # HOLD allowlist
    vault: Vault
    report: Report
    wait: Callable[[float], None]
    expiry_wait_seconds: int


def product_version_form(value: str) -> str:
    """aliyun-local's name for the form of GetKmsInstance's ProductVersion."""
    text = (value or "").strip().lower()
    if text in ("3", "5"):
        return "numeric"
    return "named" if text.startswith(("software", "hardware")) else "opaque"


def probe_instance(w: World, instance_id: str) -> str | None:
    """GetKmsInstance: the form of ProductVersion, and the type the agent reads from it."""
    body = w.client.get_kms_instance(km.GetKmsInstanceRequest(kms_instance_id=instance_id)).body
    raw = str(getattr(body.kms_instance, "product_version", "") or "")
    w.report.finding("instance_product_version", product_version_form(raw), f"{raw!r}")
    return w.enroller.instance_protection_level(instance_id)


def description(run_id: str) -> str:
    """The description of every key run ``run_id`` creates (the clean-up's proof it is ours)."""
    return f"byok-keeper acceptance run {run_id}: throwaway, deleted by the run"


def create_key(w: World, spec: str, instance_id: str, run_id: str) -> str | None:
    """A throwaway EXTERNAL key (tagged with the run), or None when KMS refuses the spec."""
    request = km.CreateKeyRequest(
        key_spec=spec,
        key_usage="SIGN/VERIFY",
        origin="EXTERNAL",
        dkmsinstance_id=instance_id,
        description=description(run_id),
        tags=json.dumps([{"TagKey": ACCEPTANCE_TAG, "TagValue": run_id}]),
    )
    try:
        return w.client.create_key(request).body.key_metadata.key_id
    except ClientException as exc:  # a 4xx: this instance does not take the spec
        if throttling_form(exc) is not None:
            raise
        w.report.check(f"CreateKey {spec}", True, f"refused: {exc.code}")
        return None


def record_specs(w: World, level: str | None, tried: list[str], taken: list[str]) -> None:
    if level is None:
        return
    expected = sorted(s for s in tried if s in SPECS_BY_PROTECTION_LEVEL[level])
    w.report.finding(SPECS, sorted(taken), f"a {level} instance", default=expected)


def exercise_key(w: World, key_id: str, spec: str, level: str | None) -> None:
    """Every behaviour on one key; a step that fails is recorded and the next one still runs
    when the key can take it."""
    meta = w.client.describe_key(km.DescribeKeyRequest(key_id=key_id)).body.key_metadata
    w.report.finding("primary_key_version", "present" if meta.primary_key_version else "absent")
    with generate_material(spec) as material:
        if not _enroll(w, key_id, material, meta.protection_level):
            return
        steps = (_delete_and_restore, _other_material, _hold, _disabled, _expiry)
        for step in steps:
            try:
                step(w, key_id, material)
            except Exception as exc:
                w.report.check(f"{step.__name__.strip('_')} {spec}", False, _one_line(exc))


def _enroll(w: World, key_id: str, material: PrivateKeyMaterial, level: str) -> bool:
    spec = material.spec.name
    try:
        enroll(w.enroller, w.vault, material, lease=parse_lease("30d"), key_id=key_id)
    except InputError as exc:
        refused = "refuses imported" in str(exc)
        if refused and level == "HSM":
            w.report.finding("hardware_accepts_asymmetric_import", False, spec)
        w.report.check(f"enroll {spec}", refused, _one_line(exc))  # a clean refusal is right
        return False
    if level == "HSM":
        w.report.finding("hardware_accepts_asymmetric_import", True, spec)
    w.report.check(f"enroll {spec}", True)
    return True


def _state(w: World, key_id: str) -> str:
    return w.client.describe_key(km.DescribeKeyRequest(key_id=key_id)).body.key_metadata.key_state


def _restore(w: World, key_id: str, name: str) -> Any:
    outcome = reestablish(w.sweeper, w.vault, key_id)
    w.report.check(name, outcome.outcome == "restored", f"{outcome.outcome}: {outcome.reason}")
    return outcome


def _delete_and_restore(w: World, key_id: str, material: PrivateKeyMaterial) -> None:
    w.client.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    w.report.finding(STATES, _state(w, key_id), "after DeleteKeyMaterial")
    _restore(w, key_id, f"restore after deletion {material.spec.name}")


def _other_material(w: World, key_id: str, material: PrivateKeyMaterial) -> None:
    """Other material of the same spec, straight through the SDK: the code KMS answers, and
    whether the agent reads that code as a mismatch (``importing.MATERIAL_REFUSED``)."""
    spec = material.spec
    params = w.client.get_parameters_for_import(
        km.GetParametersForImportRequest(
            key_id=key_id,
            wrapping_algorithm=spec.wrapping_algorithm,
            wrapping_key_spec=spec.wrapping_key_spec,
        )
    ).body
    with generate_material(spec.name) as other:
        plain = other.import_bytes()
        wrapped = wrap_key_material(plain, params.public_key, spec.wrapping_algorithm)
    request = km.ImportKeyMaterialRequest(
        key_id=key_id,
        encrypted_key_material=wrapped,
        import_token=params.import_token,
        key_material_expire_unix=0,
    )
    try:
        w.client.import_key_material(request)
    except Exception as exc:  # the SDK's ClientException
        code = str(getattr(exc, "code", "") or type(exc).__name__)
        w.report.finding("different_material_error", code, spec.name)
        w.report.check(f"other material refused {spec.name}", code in MATERIAL_REFUSED, code)
        return
    w.report.check(f"other material refused {spec.name}", False, "KMS took other material")


def _hold(w: World, key_id: str, material: PrivateKeyMaterial) -> None:
    spec = material.spec.name
    w.holder.tag_key(key_id, {HOLD_TAG: "acceptance run"})
    try:
        w.client.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
        held = reestablish(w.sweeper, w.vault, key_id)
        untouched = _state(w, key_id) == "PendingImport"
        w.report.check(f"hold wins {spec}", held.outcome == "held" and untouched, held.reason)
    finally:
        w.holder.untag_key(key_id, [HOLD_TAG])
    _restore(w, key_id, f"restore after release {spec}")


def _disabled(w: World, key_id: str, material: PrivateKeyMaterial) -> None:
    w.client.disable_key(km.DisableKeyRequest(key_id=key_id))
    w.client.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    _restore(w, key_id, f"restore a disabled key {material.spec.name}")
    after = _state(w, key_id)
    w.report.finding("disabled_key_after_import", after, material.spec.name)
    if after == "Disabled":
        w.client.enable_key(km.EnableKeyRequest(key_id=key_id))


def _expiry(w: World, key_id: str, material: PrivateKeyMaterial) -> None:
    """Import the same material with an expiry a minute away, wait for it to lapse (bounded),
    and have the agent restore the key."""
    spec = material.spec.name
    expire = int(w.sweeper.now().timestamp()) + 60
    try:
        import_once(w.sweeper, w.sweeper.describe_key(key_id), material, expire)
    except KmsApiError as exc:
        w.report.check(f"short expiry {spec}", False, f"a 60 s expiry was refused: {exc.code}")
        return
    state, step = _state(w, key_id), 15
    for _ in range(max(1, w.expiry_wait_seconds // step) + 5):
        if state == "PendingImport":
            break
        w.wait(step)
        state = _state(w, key_id)
    w.report.finding(STATES, state, "after the material expired")
    if state == "PendingImport":
        _restore(w, key_id, f"restore after expiry {spec}")
    else:
        w.report.check(f"expiry {spec}", False, f"still {state} after the wait")


def probe_throttling(w: World, key_id: str, burst: int) -> None:
    """``burst`` DescribeKey calls at once without retries: how a refusal looks on the wire;
    then as many through the agent's gateway, which must get every one through."""
    with ThreadPoolExecutor(max_workers=8) as pool:  # a burst, as busy production traffic is
        answers = list(pool.map(lambda _: _raw_read(w, key_id), range(burst)))
    forms = [a for a in answers if a is not None]
    form = forms[0] if forms else None
    if form is None:
        w.report.check("throttling", True, f"{burst} reads were not throttled: no answer seen")
        return
    w.report.finding("throttling_answer", form)
    for _ in range(burst):
        w.sweeper.describe_key(key_id)  # raises when its retries run out
    w.report.check("throttling handled", True, f"{burst} reads through the agent's gateway")


def _raw_read(w: World, key_id: str) -> str | None:
    """One DescribeKey without retries: None, or the form of its throttling refusal."""
    try:
        w.client.describe_key(km.DescribeKeyRequest(key_id=key_id))
    except Exception as exc:
        form = throttling_form(exc)
        if form is None:
            raise
        return form
    return None


def throttling_form(exc: Exception) -> str | None:
    """The ``throttling_answer`` value an SDK exception shows, or None if not throttling."""
    code = str(getattr(exc, "code", "") or "")
    if code == "Rejected.Throttling" and not isinstance(exc, ThrottlingException):
        return "Rejected.Throttling/no-retry-after"
    if code.startswith("Throttling") or code == "Rejected.Throttling":
        return code
    return None


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
