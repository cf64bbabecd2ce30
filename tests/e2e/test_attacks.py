"""Issue 13 through the console script, as an operator (or an attacker with a say in the
environment) runs it: each attack is refused with one line and exit 2 (docs/SECURITY.md)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import run_cli

# ---- 4. plain HTTP ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env_changes"),
    [
        (("--kms-endpoint", "http://kms.cn-hangzhou.aliyuncs.com", "plan"), {}),
        (("plan",), {"BYOK_KMS_ENDPOINT": "http://127.0.0.1.evil.example:8080"}),
        (("plan",), {"BYOK_KMS_ENDPOINT": "http://127.0.0.1@evil.example"}),
        (("plan",), {"BYOK_KMS_ENDPOINT": "http://10.0.0.5"}),
        (("invoke", "sweep"), {"BYOK_FC_ENDPOINT": "http://1234.cn-hangzhou.fc.aliyuncs.com"}),
        (("plan",), {"ALIBABA_CLOUD_CREDENTIALS_URI": "http://169.254.1.1/credentials"}),
    ],
    ids=["kms-flag", "kms-lookalike", "kms-userinfo", "kms-private-ip", "fc", "credentials-uri"],
)
def test_plain_http_to_anything_but_loopback_is_refused_before_any_request(
    served, cli_env, args, env_changes
):
    served.emulator.calls.clear()
    out = run_cli(*args, env={**cli_env, **env_changes})
    assert out.returncode == 2, out.stderr
    assert "plain http" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not out.stdout
    assert not served.calls()


def test_plain_http_to_localhost_is_allowed(served, cli_env):
    endpoint = f"http://localhost:{served.endpoint.rsplit(':', 1)[1]}"
    out = run_cli("plan", env={**cli_env, "BYOK_KMS_ENDPOINT": endpoint})
    assert out.returncode == 0, out.stderr
