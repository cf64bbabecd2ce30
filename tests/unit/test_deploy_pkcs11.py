"""deploy.py refuses a pkcs11 sealer it cannot ship (issue 28): from the --config file or from a
template's environment, one line, exit 2, before any FC call."""

from __future__ import annotations

from tests.unit.test_deploy_targets import ACCOUNT, REGION, SOURCE, TWO_TARGETS, _refused, deploy

URI = "pkcs11:token=byok;object=byok-seal?module-path=/opt/hsm/lib/libhsm.so"


def test_a_settings_file_with_a_pkcs11_sealer_is_refused(tmp_path, capsys, monkeypatch):
    err = _refused(tmp_path, capsys, monkeypatch, f'seal_pkcs11 = "{URI}"\n' + TWO_TARGETS)
    assert "seal_pkcs11" in err and "FC cannot use the pkcs11 sealer" in err


def test_a_template_setting_a_pkcs11_sealer_is_refused(tmp_path, capsys, monkeypatch):
    import yaml

    monkeypatch.setattr(deploy, "_fc_client", lambda *args: (_ for _ in ()).throw(AssertionError))
    template = {**SOURCE, "Common": {**SOURCE["Common"]}}
    template["Common"]["Environment"] = {**SOURCE["Common"]["Environment"],
                                         "BYOK_SEAL_PKCS11": URI}  # fmt: skip
    path = tmp_path / "functions.yml"
    path.write_text(yaml.safe_dump(template))
    code = tmp_path / "code.zip"
    code.write_bytes(b"PK")
    rc = deploy.main(["--code", str(code), "--region", REGION, "--account-id", ACCOUNT,
                      "--template", str(path), "--plan"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "FC cannot use the pkcs11 sealer" in err
