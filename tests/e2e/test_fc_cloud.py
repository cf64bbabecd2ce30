"""The cloud path, here: make package -> deploy.py into aliyun-local -> the timer fires -> the
sweep fans out async -> reimport invocations (at most the reserved concurrency at once) restore
keys (checked with the KMS SDK) and a failing key lands in the OnFailure deliveries. FC 3.0
through the real alibabacloud-fc20230330 SDK (the default), and FC 2.0 (`--api 2.0`)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from aliyun_local.server import LocalServer
from byok_keeper.core.enroll import CreateRequest, enroll
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ENROLL
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file
from tests.conftest import HARDWARE_IMPORTS
from tests.e2e.conftest import run_cli
from tests.e2e.fc_cloud import (
    admin,
    deploy_package,
    enroll_keys,
    fc3_client,
    fc_cli_env,
    package_zip,
    planned_policies,
)
from tests.functional.conftest import describe, make_client, make_gateway

ROOT = Path(__file__).resolve().parents[2]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
pytestmark = pytest.mark.slow

# RSA_4096 and EC_SM2 keys here: their hardware instance takes imported material (not the
# emulator's default answer; tests/functional/test_fidelity.py covers both).
EMULATOR_SETTINGS = HARDWARE_IMPORTS


# Two hash-checked builds from the package registry: minutes each on a loaded 2-core machine.
@pytest.mark.timeout(1200)
def test_package_is_reproducible_and_handlers_import_from_the_zip_alone(package, tmp_path):
    path, digest = package
    assert package_zip(tmp_path / "again.zip") == digest
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        zf.extractall(tmp_path / "code")
    assert {"sweep/index.py", "reimport/index.py", "byok_keeper/runtimes/fc.py"} <= set(names)
    assert not any("aliyun_local" in n or "__pycache__" in n for n in names)
    # byok_keeper is installed from its wheel (make dist's build): exactly the files its RECORD
    # lists, with its metadata beside them.
    with zipfile.ZipFile(path) as zf:
        record = zf.read("byok_keeper-0.1.0.dist-info/RECORD").decode()
    listed = {line.split(",")[0] for line in record.splitlines()}
    assert {n for n in names if n.startswith("byok_keeper/")} == {
        n for n in listed if n.startswith("byok_keeper/")
    }
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import sweep.index, reimport.index; "
        "from importlib.metadata import version; "
        "print(sweep.index.handler.__module__, reimport.index.handler.__module__, "
        "version('byok-keeper'))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(tmp_path / "code")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["sweep.index", "reimport.index", "0.1.0"]


def test_fc3_deploy_timer_capped_fan_out_on_failure_and_invoke(package, served, tmp_path):
    from alibabacloud_fc20230330 import models as fc

    path, _digest = package
    specs = (("RSA_2048", "30d"), ("EC_P256", "1h"), ("EC_P256K", "1h"), ("EC_SM2", "30d"))
    vault_dir, seal, keys = enroll_keys(served, tmp_path, specs)
    cap = ("--parameter", "ReimportConcurrency=2")

    plan = deploy_package(path, served, vault_dir, seal, *cap, "--plan")
    assert "plan: create function byok-keeper-sweep (sweep.index.handler, python3.12)" in plan
    assert "plan: put concurrency byok-keeper-reimport (reserved 2)" in plan
    assert "create timer byok-keeper-sweep/schedule" in plan
    assert served.emulator.fc.functions == {}  # --plan changed nothing
    done = deploy_package(path, served, vault_dir, seal, *cap)
    assert "done: create function byok-keeper-reimport" in done
    # The role carries the policy --plan rendered (applied by Terraform or by hand on a real
    # account): FC checks it before publishing to the OnFailure topic.
    role, policies = planned_policies(plan)
    admin(served, "POST", "ram/roles", {"role": role, "policies": policies})

    # --pin-keys: the import grants name exactly the vault's keys, and the next enrollment
    # shows up when the policy is rendered again (docs/SECURITY.md, "Pinning the import grants").
    def pinned_arns() -> list[str]:
        _role, (document,) = planned_policies(
            deploy_package(path, served, vault_dir, seal, *cap, "--pin-keys", "--plan")
        )
        (imports,) = [s for s in document["Statement"] if "kms:ImportKeyMaterial" in s["Action"]]
        return imports["Resource"]

    arn = "acs:kms:cn-hangzhou:1234567890123456:key/{}".format
    assert pinned_arns() == sorted(arn(k.key_id) for k in keys.values())
    later = enroll(
        make_gateway(served, ENROLL), Vault(FileStore(vault_dir), LocalKeySealer.from_file(seal)),
        generate_material("EC_P256"), lease=parse_lease("30d"),
        create=CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software"),
    )  # fmt: skip
    assert pinned_arns() == sorted([arn(later.key_id)] + [arn(k.key_id) for k in keys.values()])
    again = deploy_package(path, served, vault_dir, seal, *cap)  # idempotent re-deploy
    assert "done: update function byok-keeper-sweep" in again
    assert "done: update timer byok-keeper-sweep/schedule" in again

    # What FC 3.0 now holds, read back through Alibaba's own SDK.
    client = fc3_client(served)
    reimport = client.get_function("byok-keeper-reimport", fc.GetFunctionRequest()).body
    assert reimport.runtime == "python3.12" and reimport.handler == "reimport.index.handler"
    assert reimport.role == "acs:ram::1234567890123456:role/byok-keeper"
    assert reimport.log_config.project == "byok-keeper"
    assert reimport.environment_variables["BYOK_BUDGET_INSTANCES"] == "2"
    assert client.get_concurrency_config("byok-keeper-reimport").body.reserved_concurrency == 2
    # The sweep is capped too (the timer's and an on-call sweep at once), with its own slice.
    sweep_env = client.get_function("byok-keeper-sweep", fc.GetFunctionRequest()).body
    assert sweep_env.environment_variables["BYOK_BUDGET_INSTANCES"] == "2"
    assert client.get_concurrency_config("byok-keeper-sweep").body.reserved_concurrency == 2

    served.emulator.kms.delete_key_material(keys["RSA_2048"].key_id)
    served.advance_clock(2 * 3600)  # the EC keys' 1 h leases lapse
    admin(served, "POST", "fc/fire/byok-keeper-sweep/schedule")
    assert admin(served, "POST", "fc/wait", {"timeout": 120})["idle"]
    kms = make_client(served)
    for spec, _lease in specs:
        assert describe(kms, keys[spec].key_id).key_state == "Enabled", spec
        assert served.key_view(keys[spec].key_id)["material_fingerprint"] == keys[spec].fingerprint
    invoked = [i["function"] for i in admin(served, "GET", "fc/invocations")]
    # InlineKeys=0: the sweep keeps none; three due keys travel in one batch.
    assert invoked.count("byok-keeper-sweep") == 1 and invoked.count("byok-keeper-reimport") == 1
    assert served.emulator.fc.peak_concurrency[("", "byok-keeper-reimport")] <= 2
    assert any(c["action"] == "ImportKeyMaterial" for c in served.calls())

    # A key KMS keeps failing: the reimport raises, FC retries, then delivers to OnFailure.
    served.emulator.kms.delete_key_material(keys["EC_SM2"].key_id)
    served.set_faults(fail_next={"GetParametersForImport": ["ServiceUnavailableTemporary"] * 40})
    admin(served, "POST", "fc/fire/byok-keeper-sweep/schedule")
    assert admin(served, "POST", "fc/wait", {"timeout": 240})["idle"]
    (delivery,) = admin(served, "GET", "fc/deliveries")
    assert delivery["kind"] == "OnFailure" and delivery["function"] == "byok-keeper-reimport"
    assert delivery["attempts"] == 4  # the first try and AsyncRetries: 3
    assert json.loads(delivery["event"])["key_ids"] == [keys["EC_SM2"].key_id]
    assert delivery["destination"].startswith("acs:mns:cn-hangzhou:1234567890123456:/topics/")
    # The same failure under a role without mns:PublishMessage on the topic: FC cannot publish
    # it, so nothing is delivered and the function's log says why.
    (document,) = policies
    document = {**document, "Statement": [s for s in document["Statement"]
                                          if "mns:PublishMessage" not in s["Action"]]}  # fmt: skip
    admin(served, "POST", "ram/roles", {"role": role, "policies": [document]})
    served.set_faults(fail_next={"GetParametersForImport": ["ServiceUnavailableTemporary"] * 40})
    admin(served, "POST", "fc/fire/byok-keeper-sweep/schedule")
    assert admin(served, "POST", "fc/wait", {"timeout": 240})["idle"]
    assert len(admin(served, "GET", "fc/deliveries")) == 1  # still only the first
    logs = admin(served, "GET", "fc/logs")
    refused = [line for line in logs if "destination" in line and "is not allowed" in line]
    assert len(refused) == 1 and role in refused[0] and delivery["destination"] in refused[0]
    served.set_faults()

    # On call, with only fc:InvokeFunction: the same core through the deployed FC 3.0 function.
    env = fc_cli_env(served)
    out = run_cli(
        "invoke", "reimport", keys["EC_SM2"].key_id, "--reason", "INC-7", "--output", "json",
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["result"]["outcome"] == "restored"
    dry = run_cli("invoke", "sweep", "--dry-run", "--output", "json", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert json.loads(dry.stdout)["result"]["dry_run"] is True
    logs = "\n".join(admin(served, "GET", "fc/logs"))
    for result in keys.values():
        assert result.fingerprint in logs  # the canonical lines made it to the function log
    # Each line once, as our JSON (the runtime's own root handler was replaced), with the FC
    # request id bound.
    rsa = keys["RSA_2048"].key_id
    mentioning = [line.split(": ", 1)[1] for line in logs.splitlines() if rsa in line]
    assert mentioning and all(json.loads(line)["fc_request_id"] for line in mentioning)


def test_fc2_path_still_deploys_a_service_on_python310_and_restores(package, served, tmp_path):
    path, _digest = package
    vault_dir, seal, keys = enroll_keys(served, tmp_path, (("EC_P256", "30d"),))
    done = deploy_package(path, served, vault_dir, seal, "--api", "2.0")
    assert "done: create service byok-keeper" in done
    assert "done: create function byok-keeper/reimport (reimport.index.handler, python3.10)" in done
    assert served.emulator.fc.functions[("byok-keeper", "sweep")].runtime == "python3.10"
    # The cap the budget slice assumes: FC 2.0's on-demand maximum instance count.
    assert "done: put on-demand config byok-keeper/reimport (maximum instances 5)" in done
    assert served.emulator.fc.concurrency[("byok-keeper", "reimport")] == 5
    assert "update function byok-keeper/sweep" in deploy_package(
        path, served, vault_dir, seal, "--api", "2.0"
    )

    key = keys["EC_P256"]
    served.emulator.kms.delete_key_material(key.key_id)
    admin(served, "POST", "fc/fire/byok-keeper/schedule")
    assert admin(served, "POST", "fc/wait", {"timeout": 120})["idle"]
    assert describe(make_client(served), key.key_id).key_state == "Enabled"
    invoked = [i["function"] for i in admin(served, "GET", "fc/invocations")]
    assert invoked == ["sweep", "reimport"]
    out = run_cli(
        "invoke", "reimport", key.key_id, "--reason", "INC-8", "--output", "json",
        env=fc_cli_env(served, BYOK_FC_API="2.0"),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["result"]["ok"] is True


TWO_ACCOUNTS = ("1234567890123456", "2222222222222222")  # the deploying account first
TWO_REGIONS = ("cn-hangzhou", "eu-central-1")


def test_deploy_with_config_sweeps_two_accounts_in_two_regions(package, tmp_path, monkeypatch):
    """deploy.py --config: the targets file checked, shipped and named by BYOK_CONFIG; the timer
    sweeps both targets (the second through STS AssumeRole with the function role's
    credentials) and each due key is restored by a reimport acting in its target. The
    functions run with a working directory that is not their code directory (FC documents the
    code's place, not the working directory): the relative BYOK_CONFIG is still found."""
    from alibabacloud_credentials.utils import auth_util

    from byok_keeper.core.multi import target_deps
    from byok_keeper.core.settings import load_settings
    from byok_keeper.core.targets import load_targets

    a, b = TWO_ACCOUNTS
    runtimes = {"python3.12": sys.executable}
    with LocalServer(accounts=list(TWO_ACCOUNTS), regions=list(TWO_REGIONS),
                     fc_runtimes=runtimes) as cloud:  # fmt: skip
        cloud.emulator.fc.retry_delay_seconds = 0.05
        elsewhere = tmp_path / "elsewhere"  # no byok-keeper.toml here
        elsewhere.mkdir()
        cloud.emulator.fc.working_dir = str(elsewhere)
        vault_dir, seal = tmp_path / "vault", tmp_path / "seal.key"
        new_seal_key_file(seal)
        config = tmp_path / "targets.toml"
        r1, r2 = TWO_REGIONS
        config.write_text(
            f'[[targets]]\nname = "home"\nregion = "{r1}"\naccount_id = "{a}"\n'
            f'kms_endpoint = "http://{cloud.kms_endpoints[r1]}"\n\n'
            f'[[targets]]\nname = "fra"\nregion = "{r2}"\naccount_id = "{b}"\n'
            f'role_arn = "acs:ram::{b}:role/byok-keeper"\n'
            f'kms_endpoint = "http://{cloud.kms_endpoints[r2]}"\n'
            f'sts_endpoint = "http://{cloud.sts_endpoint}"\n'
        )
        # One key per target, enrolled as the CLI would (the first account's keys).
        monkeypatch.setattr(auth_util, "environment_access_key_id", "local")
        monkeypatch.setattr(auth_util, "environment_access_key_secret", "local-secret")
        monkeypatch.setattr(auth_util, "environment_security_token", None)
        settings = load_settings({"vault": f"file://{vault_dir}", "seal_key_file": str(seal)},
                                 env={}, config_path=str(config))  # fmt: skip
        keys = {}
        for target in load_targets(str(config), env={}):
            deps = target_deps(settings, target, ENROLL)
            keys[target.name] = enroll(
                deps.gateway, deps.require_vault(), generate_material("EC_P256"),
                lease=parse_lease("30d"),
                create=CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software"),
            ).key_id  # fmt: skip

        plan = deploy_package(package[0], cloud, vault_dir, seal, "--config", str(config), "--plan")
        assert f'"Resource":["acs:ram::{b}:role/byok-keeper"]' in plan  # exactly the target's
        assert cloud.emulator.fc.functions == {}
        done = deploy_package(package[0], cloud, vault_dir, seal, "--config", str(config))
        assert f"must allow sts:AssumeRole on acs:ram::{b}:role/byok-keeper" in done
        env = {n: f.env.get("BYOK_CONFIG") for (_s, n), f in
               cloud.emulator.fc.functions.items()}  # fmt: skip
        assert env == {
            "byok-keeper-sweep": "byok-keeper.toml",
            "byok-keeper-reimport": "byok-keeper.toml",
            "byok-keeper-events": None,
        }

        for key_id in keys.values():
            cloud.emulator.tenancy.find(key_id).delete_key_material(key_id)
        admin(cloud, "POST", "fc/fire/byok-keeper-sweep/schedule")
        assert admin(cloud, "POST", "fc/wait", {"timeout": 50})["idle"]
        assert {n: cloud.key_view(k)["state"] for n, k in keys.items()} == {
            "home": "Enabled", "fra": "Enabled"}  # fmt: skip
        invoked = [i["function"] for i in admin(cloud, "GET", "fc/invocations")]
        assert invoked.count("byok-keeper-sweep") == 1
        assert invoked.count("byok-keeper-reimport") == 2
        assert admin(cloud, "GET", "fc/deliveries") == []
        # fra's key was reached through STS AssumeRole, by the deploying account's function role
        assumed = {(c["account_id"], c["status"]) for c in cloud.calls()
                   if c["action"] == "AssumeRole"}  # fmt: skip
        assert assumed == {(a, 200)}
