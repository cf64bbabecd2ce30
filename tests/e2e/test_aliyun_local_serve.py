"""`aliyun-local serve` as users and CI run it: the JSON line, persistence across a restart,
clean exit on SIGTERM/SIGINT, and silence about material."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from alibabacloud_kms20160120 import models as km

from byok_keeper.crypto.material import load_private_key
from tests.e2e.conftest import BIN, serve_subprocess, stop_served
from tests.functional.conftest import create_external_key, describe, import_material, make_client

SCRIPT = str(BIN / "aliyun-local")


def test_help_teaches_the_serve_options():
    out = subprocess.run([SCRIPT, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for option in ("--host", "--port", "--state", "--access-key-id", "--access-key-secret"):
        assert option in out.stdout
    assert "kms_endpoint" in out.stdout


def test_bad_arguments_exit_2_with_one_line():
    out = subprocess.run(
        [SCRIPT, "serve", "--port", "99999"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert "must be 0-65535" in out.stderr
    assert "Traceback" not in out.stderr


def test_state_survives_a_restart_and_nothing_secret_is_printed(tmp_path, target_keys):
    from tests.functional.conftest import make_client

    state = tmp_path / "state.json"
    first = serve_subprocess("--state", str(state))
    assert first.info["kms_endpoint"].startswith("127.0.0.1:")
    assert first.info["fc_endpoint"] == first.info["kms_endpoint"]
    kms = make_client(first)
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    params = import_material(kms, key_id, material)
    kms.tag_resource(
        km.TagResourceRequest(
            key_id=key_id, tags=json.dumps([{"TagKey": "byok-keeper:lease", "TagValue": "30d"}])
        )
    )
    kms.create_secret(
        km.CreateSecretRequest(secret_name="byok/x", secret_data="sealed", version_id="1")
    )
    import urllib.request

    urllib.request.urlopen(
        urllib.request.Request(
            f"http://{first.endpoint}/_local/clock",
            method="POST",
            data=b'{"advance_seconds": 3600}',
        ),
        timeout=10,
    ).read()
    code, out, err = stop_served(first)
    assert code == 0
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    for text in (out, err):
        assert params.import_token not in text
        assert material.fingerprint not in text
        assert "EncryptedKeyMaterial" not in text

    second = serve_subprocess("--state", str(state))
    try:
        kms = make_client(second)
        assert describe(kms, key_id).key_state == "Enabled"
        tags = kms.list_resource_tags(km.ListResourceTagsRequest(key_id=key_id)).body.tags.tag
        assert [(t.tag_key, t.tag_value) for t in tags] == [("byok-keeper:lease", "30d")]
        secret = kms.get_secret_value(km.GetSecretValueRequest(secret_name="byok/x")).body
        assert secret.secret_data == "sealed"
        view = json.loads(
            urllib.request.urlopen(
                f"http://{second.endpoint}/_local/keys/{key_id}", timeout=10
            ).read()
        )
        assert view["material_fingerprint"] == material.fingerprint
        clock = json.loads(
            urllib.request.urlopen(f"http://{second.endpoint}/_local/clock", timeout=10).read()
        )
        assert 3590 < clock["offset_seconds"] < 3610
        # The import token and its wrapping key persisted too: still usable after the restart.
        from byok_keeper.crypto.wrapping import wrap_key_material

        wrapped = wrap_key_material(
            material.import_bytes(), params.public_key, material.spec.wrapping_algorithm
        )
        kms.import_key_material(
            km.ImportKeyMaterialRequest(
                key_id=key_id,
                import_token=params.import_token,
                key_material_expire_unix=0,
                encrypted_key_material=wrapped,
            )
        )
    finally:
        code, _out, _err = stop_served(second, signal.SIGINT)
    assert code == 0


def test_seed_state_loads_a_state_file_but_never_writes_it(tmp_path):
    from tests.functional.conftest import make_client

    state = tmp_path / "state.json"
    first = serve_subprocess("--state", str(state))
    key_id = make_client(first).create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    assert stop_served(first)[0] == 0
    before = state.read_bytes()
    second = serve_subprocess("--seed-state", str(state))
    try:
        kms = make_client(second)
        assert describe(kms, key_id).key_state == "Enabled"
        kms.create_key(km.CreateKeyRequest())
        kms.disable_key(km.DisableKeyRequest(key_id=key_id))
    finally:
        assert stop_served(second)[0] == 0
    assert state.read_bytes() == before
    both = subprocess.run([SCRIPT, "serve", "--state", "a", "--seed-state", "b"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr


def test_profile_and_set_choose_the_undocumented_answers():
    served = serve_subprocess("--profile", "strict", "--set", "disabled_key_after_import=Enabled")
    try:
        shown = served.info["settings"]
        assert shown["profile"] == "strict"
        assert shown["overrides"] == ["disabled_key_after_import"]
        assert shown["disabled_key_after_import"] == "Enabled"
        assert shown["hardware_accepts_asymmetric_import"] is False
        assert served.admin("settings") == shown  # the admin API shows what is in force
    finally:
        assert stop_served(served)[0] == 0


def test_a_bad_setting_exits_2_with_one_line():
    for args in (["--set", "nonsense=1"], ["--set", "max_tags_per_key=7"], ["--profile", "lax"]):
        out = subprocess.run(
            [SCRIPT, "serve", "--port", "0", *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 2, args
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_fc_runtime_maps_a_runtime_and_a_bad_one_exits_2():
    out = subprocess.run(
        [SCRIPT, "serve", "--port", "0", "--fc-runtime", "python3.12"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and "RUNTIME=PYTHON" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    served = serve_subprocess("--fc-runtime", f"python3.12={sys.executable}")
    try:
        assert served.info["fc_runtimes"] == {"python3.12": sys.executable}
    finally:
        assert stop_served(served)[0] == 0


def test_event_delay_sets_the_eventbridge_delivery_delay_and_a_bad_one_exits_2():
    for bad in ("-1", "soon", "601"):
        out = subprocess.run(
            [SCRIPT, "serve", "--port", "0", "--event-delay", bad],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 2 and "--event-delay" in out.stderr, bad
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    served = serve_subprocess("--event-delay", "1.5")
    try:
        assert served.admin("events/config")["delivery_delay_seconds"] == 1.5
        assert served.admin("events") == []
    finally:
        assert stop_served(served)[0] == 0


def test_wrapping_key_pool_makes_keys_before_serving_and_a_bad_size_exits_2(target_keys):
    for bad in ("-1", "many", "100001"):
        out = subprocess.run(
            [SCRIPT, "serve", "--port", "0", "--wrapping-key-pool", bad],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 2 and "--wrapping-key-pool" in out.stderr, bad
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    served = serve_subprocess("--wrapping-key-pool", "3")
    try:  # every import still gets its own fresh wrapping key
        kms = make_client(served)
        key_id = create_external_key(kms, "EC_P256")
        material = load_private_key(target_keys["EC_P256"], key_spec="EC_P256")
        import_material(kms, key_id, material)
        assert describe(kms, key_id).key_state == "Enabled"
    finally:
        assert stop_served(served)[0] == 0
