"""``python -m tests.acceptance`` (``make acceptance``): the run, its configuration and its
clean-up. See the package docstring and docs/FIDELITY.md ("The acceptance run")."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alibabacloud_kms20160120 import models as km

from byok_keeper.crypto.specs import KEY_SPECS
from byok_keeper.gateway.kms import ENROLL, HOLD_ACTIONS, SWEEP, KmsGateway, build_client
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file

from . import probes
from .probes import ACCEPTANCE_TAG, World
from .report import Report

PENDING_WINDOW_DAYS = 7  # ScheduleKeyDeletion's shortest window (SDK: "Valid values: 7 to 366")
MAX_LEFTOVER_PAGES = 10
RUN_ID = re.compile(r"acc-[0-9]{10}-[0-9a-f]{6}")  # run_acceptance's run_id


class Refused(Exception):
    """The run will not start (exit 2, one line)."""


@dataclass(frozen=True)
class Config:
    region: str
    instance_id: str
    endpoint: str | None = None  # BYOK_KMS_ENDPOINT: aliyun-local, or a VPC endpoint
    specs: tuple[str, ...] = tuple(KEY_SPECS)
    report: Path = Path("acceptance-report.json")
    expiry_wait_seconds: int = 300
    throttle_burst: int = 0  # off by default: KMS quotas are shared with production traffic

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """The run's configuration; ``Refused`` without the opt-in or a required value."""
        if env.get("BYOK_ACCEPTANCE") != "1":
            raise Refused(
                "refusing to start without BYOK_ACCEPTANCE=1: the run creates throwaway KMS "
                "keys in a real account (then schedules their deletion)"
            )
        region = env.get("BYOK_REGION") or env.get("ALIBABA_CLOUD_REGION_ID") or ""
        instance = env.get("BYOK_ACCEPTANCE_INSTANCE", "")
        if not region or not instance:
            raise Refused("set BYOK_REGION and BYOK_ACCEPTANCE_INSTANCE (a KMS instance id)")
        specs = tuple(s.strip() for s in env.get("BYOK_ACCEPTANCE_SPECS", "").split(",") if s)
        unknown = [s for s in specs if s not in KEY_SPECS]
        if unknown:
            raise Refused(f"unknown key spec in BYOK_ACCEPTANCE_SPECS: {', '.join(unknown)}")
        return cls(
            region=region,
            instance_id=instance,
            endpoint=env.get("BYOK_KMS_ENDPOINT") or None,
            specs=specs or tuple(KEY_SPECS),
            report=Path(env.get("BYOK_ACCEPTANCE_REPORT", "acceptance-report.json")),
            expiry_wait_seconds=_number(env, "BYOK_ACCEPTANCE_EXPIRY_WAIT", 300, 60, 3600),
            throttle_burst=_number(env, "BYOK_ACCEPTANCE_THROTTLE_BURST", 0, 0, 500),
        )


def _number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name, "")
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise Refused(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def run_acceptance(
    config: Config,
    *,
    client: Any = None,
    gateway: KmsGateway | None = None,
    wait: Callable[[float], None] = time.sleep,
) -> Report:
    """The whole run. ``client`` (the SDK's) and ``gateway`` (the agent's, any allowlist)
    default to ones built from the credential chain; ``wait`` sleeps while material expires.
    Every key created is scheduled for deletion, and the report written to ``config.report``,
    before this returns or raises."""
    run_id = f"acc-{int(time.time())}-{secrets.token_hex(3)}"  # RUN_ID
    report = Report(run_id, config.region, config.instance_id)
    client = client or build_client(region=config.region, endpoint=config.endpoint)
    gateway = gateway or KmsGateway(client, ENROLL, region=config.region)
    created: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="byok-acceptance-") as tmp:
        new_seal_key_file(Path(tmp) / "seal.key")
        vault = Vault(
            FileStore(Path(tmp) / "vault"), LocalKeySealer.from_file(Path(tmp) / "seal.key")
        )
        world = World(
            client,
            gateway.with_allowlist(ENROLL),
            gateway.with_allowlist(SWEEP),
            gateway.with_allowlist(HOLD_ACTIONS),
            vault,
            report,
            wait,
            config.expiry_wait_seconds,
        )
        try:
            _leftovers(client, report, config.instance_id)
            _exercise(world, config, run_id, created)
        except Exception as exc:  # recorded; the keys are deleted all the same
            report.check("run", False, probes._one_line(exc))
        except BaseException as exc:  # interrupted: recorded and cleaned up, then passed on
            report.check("run", False, f"interrupted ({type(exc).__name__})")
            raise
        finally:
            _schedule_deletion(client, created, report)
            report.write(config.report)
    return report


def _exercise(w: World, config: Config, run_id: str, created: list[tuple[str, str]]) -> None:
    level = probes.probe_instance(w, config.instance_id)
    taken = []
    for spec in config.specs:
        key_id = probes.create_key(w, spec, config.instance_id, run_id)
        if key_id is not None:
            created.append((key_id, spec))  # before anything else can fail
            taken.append(spec)
    if level is None and created:  # ProductVersion unreadable: ask the key itself
        meta = w.client.describe_key(km.DescribeKeyRequest(key_id=created[0][0])).body
        level = meta.key_metadata.protection_level or None
    probes.record_specs(w, level, list(config.specs), taken)
    for key_id, spec in created:
        probes.exercise_key(w, key_id, spec, level)
    if config.throttle_burst and created:
        probes.probe_throttling(w, created[0][0], config.throttle_burst)


def _leftovers(client: Any, report: Report, instance_id: str) -> None:
    """Keys an earlier run left behind (a crash before its clean-up): schedule their deletion.
    The tag key alone proves nothing (anyone with kms:TagResource can set it on any key), so
    only a key this run's code made is deleted (``ours``); any other key carrying the tag is
    listed in the report (``leftover_refused``), never touched."""
    found = []
    filters = json.dumps([{"Key": "TagKey", "Values": [ACCEPTANCE_TAG]}])
    for page in range(1, MAX_LEFTOVER_PAGES + 1):
        body = client.list_keys(
            km.ListKeysRequest(page_number=page, page_size=100, filters=filters)
        ).body
        keys = body.keys.key if body.keys and body.keys.key else []
        found += [k.key_id for k in keys]
        if len(keys) < 100:
            break
    for key_id in found:
        meta = client.describe_key(km.DescribeKeyRequest(key_id=key_id)).body.key_metadata
        if meta.key_state == "PendingDeletion":
            continue
        listed = client.list_resource_tags(km.ListResourceTagsRequest(key_id=key_id)).body
        tags = listed.tags.tag if listed.tags and listed.tags.tag else []
        run_ids = [t.tag_value or "" for t in tags if t.tag_key == ACCEPTANCE_TAG]
        why = ours(meta, run_ids, instance_id)
        if why is None:
            _schedule_deletion(client, [(key_id, meta.key_spec)], report, leftover=True)
        else:
            report.leftover_refused.append({"key_id": key_id, "not_deleted_because": why})


def ours(meta: Any, run_ids: list[str], instance_id: str) -> str | None:
    """None when ``meta`` (DescribeKey's) is a key ``probes.create_key`` made in
    ``instance_id``: Origin EXTERNAL, its one acceptance tag a run id, and the description
    that run wrote. Otherwise why it is not ours."""
    if meta.origin != "EXTERNAL":
        return f"Origin {meta.origin}, not EXTERNAL"
    if (meta.dkmsinstance_id or "") != instance_id:
        return f"in instance {meta.dkmsinstance_id or 'none'}, not {instance_id}"
    if len(run_ids) != 1 or not RUN_ID.fullmatch(run_ids[0]):
        return f"tag {ACCEPTANCE_TAG} is not one acceptance run id"
    if meta.description != probes.description(run_ids[0]):
        return "description is not the acceptance run's"
    return None


def _schedule_deletion(
    client: Any, keys: list[tuple[str, str]], report: Report, *, leftover: bool = False
) -> None:
    for key_id, spec in keys:
        entry: dict[str, Any] = {"key_id": key_id, "spec": spec, "leftover": leftover}
        try:
            client.schedule_key_deletion(
                km.ScheduleKeyDeletionRequest(
                    key_id=key_id, pending_window_in_days=PENDING_WINDOW_DAYS
                )
            )
            entry["deletion_scheduled"] = True
        except Exception as exc:  # reported: the operator deletes it by hand
            entry["deletion_scheduled"] = False
            entry["error"] = probes._one_line(exc)
        report.keys.append(entry)


def main(env: Mapping[str, str] | None = None) -> int:
    """Exit 0: every check passed and every key is scheduled for deletion (differences from
    aliyun-local are findings, listed); 1: a check or a deletion failed; 2: not started."""
    try:
        config = Config.from_env(os.environ if env is None else env)
    except Refused as exc:
        print(f"acceptance: {exc}", file=sys.stderr)
        return 2
    report = run_acceptance(config)
    for line in report.lines():
        print(line)
    print(f"report: {config.report}")
    return 0 if report.ok else 1
