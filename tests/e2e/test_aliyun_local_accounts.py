"""`aliyun-local serve --account ... --region ...` as users run it (issue 16): the JSON line names
every region's KMS endpoint and STS's, and the real SDKs work against them."""

from __future__ import annotations

import subprocess

from alibabacloud_kms20160120 import models as km
from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_sts20150401 import models as sm
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.models import Config

from tests.e2e.conftest import BIN, serve_subprocess, stop_served

A, B = "1111111111111111", "2222222222222222"


def _config(endpoint: str, region: str, key_id: str, secret: str, token: str | None = None):
    return Config(
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=token,
        endpoint=endpoint,
        protocol="http",
        region_id=region,
        read_timeout=30_000,
        connect_timeout=5_000,
    )


def test_serve_many_accounts_and_regions_prints_every_endpoint():
    served = serve_subprocess(
        "--account", A, "--account", B, "--region", "cn-hangzhou", "--region", "eu-central-1"
    )
    try:
        info = served.info
        endpoints = info["kms_endpoints"]
        assert list(endpoints) == ["cn-hangzhou", "eu-central-1"]
        assert info["kms_endpoint"] == endpoints["cn-hangzhou"] != endpoints["eu-central-1"]
        assert info["sts_endpoint"] not in endpoints.values()
        assert info["region"] == "cn-hangzhou"
        assert info["access_key_ids"] == {A: "local", B: f"local-{B}"}

        frankfurt = endpoints["eu-central-1"]
        theirs = KmsClient(_config(frankfurt, "eu-central-1", f"local-{B}", "local-secret"))
        key = theirs.create_key(km.CreateKeyRequest()).body.key_metadata
        assert key.arn.startswith(f"acs:kms:eu-central-1:{B}:key/")

        sts = StsClient(_config(info["sts_endpoint"], "cn-hangzhou", "local", "local-secret"))
        creds = sts.assume_role(
            sm.AssumeRoleRequest(
                role_arn=f"acs:ram::{B}:role/byok-keeper", role_session_name="byok-keeper-eu"
            )
        ).body.credentials
        as_b = KmsClient(
            _config(
                frankfurt,
                "eu-central-1",
                creds.access_key_id,
                creds.access_key_secret,
                creds.security_token,
            )
        )
        keys = as_b.list_keys(km.ListKeysRequest()).body.keys.key
        assert [k.key_id for k in keys] == [key.key_id]
        mine = KmsClient(_config(info["kms_endpoint"], "cn-hangzhou", "local", "local-secret"))
        assert mine.list_keys(km.ListKeysRequest()).body.total_count == 0
    finally:
        code, _out, _err = stop_served(served)
    assert code == 0


def test_serve_without_accounts_prints_one_region_and_sts():
    served = serve_subprocess()
    try:
        info = served.info
        assert info["kms_endpoints"] == {"cn-hangzhou": info["kms_endpoint"]}
        assert info["sts_endpoint"].startswith("127.0.0.1:")
        assert info["access_key_ids"] == {"1234567890123456": "local"}
    finally:
        assert stop_served(served)[0] == 0


def test_bad_accounts_and_regions_exit_2_with_one_line():
    script = str(BIN / "aliyun-local")
    for args, why in (
        (["--account", "123"], "16 digits"),
        (["--account", A, "--account", A], "given twice"),
        (["--region", "cn-hangzhou", "--region", "cn-hangzhou"], "given twice"),
    ):
        out = subprocess.run([script, "serve", *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, args
        assert why in out.stderr and out.stderr.count("\n") == 1
        assert out.stdout == ""
