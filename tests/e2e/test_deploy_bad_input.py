"""deploy.py as an operator runs it, with bad input (issue 26): a code file that is not the code
package, or no credentials at all, end in one line and exit 2, with no traceback and nothing
created in FC (aliyun-local's FC 3.0, through the real SDK)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ("sweep", "reimport", "events")


def _package(path: Path, modules: tuple[str, ...] = HANDLERS) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for role in modules:
            zf.writestr(f"{role}/index.py", "def handler(event, context):\n    return '{}'\n")
    return path


def _deploy(served, code: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "deploy.py"), "--code", str(code),
         "--region", served.region, "--account-id", "1234567890123456",
         "--fc-endpoint", f"http://{served.endpoint}"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def _raw(data: bytes):
    def write(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return write


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No credentials anywhere the chain looks: no variables, an empty home, no ECS metadata."""
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith("ALIBABA_CLOUD_")}  # fmt: skip
    env.update(HOME=str(tmp_path), ALIBABA_CLOUD_ECS_METADATA_DISABLED="true", **extra)
    return env


def _credentials(tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path, ALIBABA_CLOUD_ACCESS_KEY_ID="local",
                ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret")  # fmt: skip


@pytest.mark.parametrize(
    ("make_code", "with_credentials", "says"),
    [
        (_raw(b"not a zip at all\n"), True, "is not a zip archive"),
        (_raw(b"PK\x03\x04truncated"), True, "is not a zip archive"),
        (lambda p: _package(p, ("sweep",)), True, "holds no reimport/index.py"),
        (lambda p: _package(p), False, "no Alibaba Cloud credentials"),
    ],
    ids=["text", "truncated-zip", "missing-handler", "no-credentials"],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    served, tmp_path, make_code, with_credentials, says
):
    served.reset()
    code = make_code(tmp_path / "code.zip")
    env = _credentials(tmp_path) if with_credentials else _env(tmp_path)
    out = _deploy(served, code, env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert served.emulator.fc.functions == {}  # nothing created


def test_the_same_package_with_credentials_deploys(served, tmp_path):
    served.reset()
    out = _deploy(served, _package(tmp_path / "code.zip"), _credentials(tmp_path))
    assert out.returncode == 0, out.stderr
    assert {name for _svc, name in served.emulator.fc.functions} == {
        f"byok-keeper-{role}" for role in HANDLERS
    }
