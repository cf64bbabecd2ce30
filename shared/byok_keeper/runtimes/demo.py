"""``byok-keeper demo``: the whole story against an embedded aliyun-local, checked from outside.

1. Start aliyun-local in-process on a free loopback port; a file vault and a seal key in a
   temporary directory.
2. Enroll six keys: RSA_2048, RSA_3072, EC_P256, EC_P256K, and RSA_4096 and EC_SM2 (hardware;
   the emulator is told that its hardware instance takes imported asymmetric material, which
   is not its default answer: docs/FIDELITY.md, ``hardware_accepts_asymmetric_import``).
3. Make trouble: delete RSA_2048's material; let EC_P256's expire (the emulator clock moves);
   bring RSA_3072 inside the renewal window; hold EC_P256K and delete its material.
4. Print the plan, run the sweep, print before/after.
5. Check from outside (the emulator's own view): every restorable key is Enabled with its
   original fingerprint, and the held key was not touched. Exit 0 only if all of that holds.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from ..core.enroll import CreateRequest, enroll
from ..core.sweep import discover, sweep_keys
from ..crypto.material import generate_material
from ..crypto.specs import HARDWARE_ONLY
from ..domain.errors import InputError
from ..domain.lease import parse_lease
from ..gateway.kms import (
    ENROLL,
    SWEEP,
    KmsGateway,
    RequestBudget,
    build_client,
    format_kms_time,
    static_credential,
)
from ..operations.render import expiry, table
from ..planning.plan import HOLD_TAG, Policy, plan
from ..vault import FileStore, LocalKeySealer, Vault
from ..vault.sealers import new_seal_key_file


def _emulator() -> type:
    """aliyun-local's ``LocalServer``: a distribution of its own, which ``pip install
    byok-keeper`` does not bring (a deployment needs no emulator)."""
    try:
        from aliyun_local.server import LocalServer
    except ModuleNotFoundError as exc:
        if exc.name != "aliyun_local":
            raise  # installed but broken: not the one-line case
        raise InputError(
            "the demo runs against the aliyun-local emulator, which is not installed: "
            "pip install aliyun-local"
        ) from None
    return LocalServer


# spec, usage, lease, trouble
CAST = [
    ("RSA_2048", "SIGN/VERIFY", "30d", "delete"),
    ("EC_P256", "SIGN/VERIFY", "1h", "expire"),
    ("RSA_3072", "ENCRYPT/DECRYPT", "14d", "renew"),
    ("EC_P256K", "SIGN/VERIFY", "30d", "hold+delete"),
    ("RSA_4096", "SIGN/VERIFY", "30d", "none"),
    ("EC_SM2", "SIGN/VERIFY", "90d", "none"),
]

# RSA_4096 and EC_SM2 live only in hardware instances; aliyun-local's default (and a real
# account's, per the newest docs) refuses imported asymmetric material there.
HARDWARE_IMPORTS = {"hardware_accepts_asymmetric_import": True}


def run_demo(echo: Callable[[str], None] = print, keep: str | None = None) -> int:
    """The whole story against an embedded aliyun-local; 0 only if every restorable key is back.

    Raises:
        InputError: the aliyun-local distribution (the emulator) is not installed.
    """
    from ..domain.logs import configure

    LocalServer = _emulator()

    configure(level=os.environ.get("BYOK_LOG_LEVEL", "WARNING"))
    started = time.monotonic()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    with (
        tempfile.TemporaryDirectory(prefix="byok-demo-") as tmp,
        LocalServer(settings=HARDWARE_IMPORTS) as server,
    ):
        root = Path(keep) if keep else Path(tmp)
        vault, enroller = _setup(server, root)
        sweeper = enroller.with_allowlist(SWEEP)
        echo(f"aliyun-local on {server.endpoint}; vault {vault.uri}")
        echo("(its hardware instance takes imported material here; by default it refuses)\n")

        echo("1. enrolling six keys")
        keys, fingerprints = _enroll_cast(enroller, vault, echo)
        echo("\n2. making trouble")
        held_before = _make_trouble(server, keys, echo)
        before = {k: server.key_view(k) for k in keys.values()}
        spec_of = {v: k for k, v in keys.items()}

        echo("\n3. byok-keeper plan")
        policy = Policy(renew_before=timedelta(days=7))
        _show_plan(enroller.with_allowlist(SWEEP), vault, policy, spec_of, echo)

        echo("\n4. byok-keeper sweep")
        result = sweep_keys(sweeper, vault, policy=policy, trigger="demo", actor="demo")
        echo(_outcomes_table(result.outcomes, spec_of))

        echo("\n5. before / after (the emulator's own view)")
        after = {k: server.key_view(k) for k in keys.values()}
        echo(_before_after(keys, fingerprints, before, after))

        problems = _problems(keys, fingerprints, before, after, held_before)
        second = sweep_keys(sweeper, vault, policy=policy, trigger="demo", actor="demo")
        if any(o.outcome in ("restored", "renewed", "failed") for o in second.outcomes):
            problems.append("a second sweep still found work to do")

        elapsed = time.monotonic() - started
        if problems:
            echo("\nDEMO FAILED:\n  " + "\n  ".join(problems))
            return 1
        echo(
            f"\nall restorable keys are Enabled with identical material; the held key was not "
            f"touched; a second sweep had nothing to do ({elapsed:.1f} s)"
        )
        return 0


def _setup(server, root: Path) -> tuple[Vault, KmsGateway]:
    """A file vault and seal key under ``root``; a gateway to the embedded emulator that may
    enroll (the sweep narrows it with ``with_allowlist``)."""
    root.mkdir(parents=True, exist_ok=True)
    new_seal_key_file(root / "seal.key") if not (root / "seal.key").exists() else None
    vault = Vault(FileStore(root / "vault"), LocalKeySealer.from_file(root / "seal.key"))
    client = build_client(
        region=server.region,
        endpoint=f"http://{server.endpoint}",
        credential=static_credential(server.access_key_id, server.access_key_secret),
    )
    budget = RequestBudget(1000, 1000)
    return vault, KmsGateway(client, ENROLL, region=server.region, budget=budget)


def _enroll_cast(
    enroller: KmsGateway, vault: Vault, echo: Callable[[str], None]
) -> tuple[dict[str, str], dict[str, str]]:
    """Create and enroll one key per ``CAST`` line: spec -> key id, key id -> fingerprint."""
    keys: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    for spec, usage, lease, _trouble in CAST:
        instance = "kst-local-hardware" if spec in HARDWARE_ONLY else "kst-local-software"
        with generate_material(spec) as material:
            result = enroll(
                enroller,
                vault,
                material,
                lease=parse_lease(lease),
                create=CreateRequest(spec, usage, instance, f"demo {spec}"),
            )
        keys[spec] = result.key_id
        fingerprints[result.key_id] = result.fingerprint
        echo(
            f"   {spec:<9} {result.key_id}  lease {lease:<4} "
            f"fingerprint {result.fingerprint[:16]}..."
        )
    return keys, fingerprints


def _make_trouble(server, keys: dict[str, str], echo: Callable[[str], None]) -> dict:
    """Delete, expire, bring into the window, hold: returns the held key's view before."""
    emulator = server.emulator
    emulator.kms.delete_key_material(keys["RSA_2048"])
    echo(f"   deleted the material of RSA_2048 ({keys['RSA_2048']})")
    server.advance_clock(8 * 86400)
    echo(f"   moved the KMS clock 8 days: EC_P256's 1 h lease lapsed ({keys['EC_P256']})")
    echo(f"   RSA_3072's 14 d lease now ends inside the 7 d renewal window ({keys['RSA_3072']})")
    emulator.kms.tag_key(keys["EC_P256K"], {HOLD_TAG: "demo: compromised - deleted on purpose"})
    emulator.kms.delete_key_material(keys["EC_P256K"])
    echo(f"   held and deleted EC_P256K ({keys['EC_P256K']})")
    return server.key_view(keys["EC_P256K"])


def _show_plan(planner: KmsGateway, vault: Vault, policy: Policy, spec_of, echo) -> None:
    facts, _errors = discover(planner, vault, policy=policy, details="all")
    decisions = plan(facts, planner.now(), policy)
    rows = [
        [
            d.key_id,
            spec_of[d.key_id],
            d.key_state,
            expiry(d.key_state, d.material_expire_time),
            d.decision,
            d.reason,
        ]
        for d in decisions
    ]
    echo(table(rows, ["KEY", "SPEC", "STATE", "EXPIRES", "DECISION", "REASON"]))


def _outcomes_table(outcomes, spec_of: dict[str, str]) -> str:
    rows = [
        [
            o.key_id,
            spec_of[o.key_id],
            o.decision,
            o.outcome,
            format_kms_time(o.new_expiry) if o.new_expiry else "",
            o.reason,
        ]
        for o in sorted(outcomes, key=lambda o: spec_of[o.key_id])
    ]
    return table(rows, ["KEY", "SPEC", "DECISION", "OUTCOME", "NEW EXPIRY", "REASON"])


def _before_after(keys, fingerprints, before, after) -> str:
    rows = []
    for spec, *_ in CAST:
        k = keys[spec]
        rows.append(
            [
                spec,
                before[k]["state"],
                after[k]["state"],
                str(before[k]["import_count"]),
                str(after[k]["import_count"]),
                "yes" if after[k]["material_fingerprint"] == fingerprints[k] else "NO",
            ]
        )
    return table(rows, ["SPEC", "BEFORE", "AFTER", "IMPORTS BEFORE", "AFTER", "SAME MATERIAL"])


def _problems(keys, fingerprints, before, after, held_before) -> list[str]:
    """What the emulator's own view contradicts: every restorable key Enabled with its
    original material, RSA_3072 renewed once, the held key untouched."""
    problems = []
    for spec, _usage, _lease, trouble in CAST:
        k = keys[spec]
        view = after[k]
        if trouble == "hold+delete":
            if (
                view["state"] != "PendingImport"
                or view["import_count"] != held_before["import_count"]
            ):
                problems.append(f"{spec}: the held key was touched")
        elif view["state"] != "Enabled" or view["material_fingerprint"] != fingerprints[k]:
            problems.append(f"{spec}: not Enabled with its original material ({view['state']})")
    if after[keys["RSA_3072"]]["import_count"] != before[keys["RSA_3072"]]["import_count"] + 1:
        problems.append("RSA_3072: was not renewed")
    return problems
