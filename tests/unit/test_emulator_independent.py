"""aliyun-local imports nothing from byok_keeper.

The emulator is the other side of every test the agent passes: if it borrowed the agent's SM2,
spec table, key loading or wrapping keys, a bug there would hide on both sides. Two checks:
every import statement of every module (functions included) read from the source, and the
package imported and serving a signed SM2 request in a Python that cannot import byok_keeper.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import aliyun_local

PACKAGE = Path(aliyun_local.__file__).resolve().parent
SHARED = PACKAGE.parent
AGENT = "byok_keeper"


def _is_agent(name: str) -> bool:
    return name == AGENT or name.startswith(AGENT + ".")


def _agent_imports(path: Path) -> list[str]:
    """``file:line module`` for each import of byok_keeper in ``path``, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            arg = node.args[0]
            if func.endswith(("import_module", "__import__")) and isinstance(arg, ast.Constant):
                names = [str(arg.value)]
        found += [f"{path.relative_to(SHARED)}:{node.lineno} {n}" for n in names if _is_agent(n)]
    return found


def test_no_module_of_the_emulator_imports_byok_keeper():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20  # the whole package, not an empty glob
    assert [hit for path in sources for hit in _agent_imports(path)] == []


# Run with -I (no PYTHONPATH, no user site): the editable installs still put byok_keeper on the
# path, so a finder first in line refuses it and remembers every attempt, caught or not.
_PROBE = r"""
import importlib, json, pkgutil, sys, urllib.request

class Refuse:
    tried = []
    def find_spec(self, name, path=None, target=None):
        if name == "byok_keeper" or name.startswith("byok_keeper."):
            Refuse.tried.append(name)
            raise ImportError(f"{name} is out of the emulator's reach")
        return None

sys.meta_path.insert(0, Refuse())
sys.path.insert(0, sys.argv[1])
import aliyun_local
for info in pkgutil.walk_packages(aliyun_local.__path__, "aliyun_local."):
    importlib.import_module(info.name)

from alibabacloud_kms20160120 import models as km
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.models import Config
from aliyun_local.server import LocalServer

with LocalServer() as server:
    with urllib.request.urlopen(f"http://{server.endpoint}/_local/health", timeout=30) as answer:
        health = json.load(answer)["ok"]
    client = Client(Config(access_key_id=server.access_key_id,
                           access_key_secret=server.access_key_secret,
                           endpoint=server.endpoint, protocol="http",
                           region_id=server.region))
    key = client.create_key(km.CreateKeyRequest(
        key_spec="EC_SM2", key_usage="SIGN/VERIFY", origin="Aliyun_KMS",
        dkmsinstance_id="kst-local-hardware")).body.key_metadata
    version = client.list_key_versions(
        km.ListKeyVersionsRequest(key_id=key.key_id)).body.key_versions.key_version[0]
    digest = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    signature = client.asymmetric_sign(km.AsymmetricSignRequest(
        key_id=key.key_id, key_version_id=version.key_version_id, algorithm="SM2DSA",
        digest=digest)).body.value
    verified = client.asymmetric_verify(km.AsymmetricVerifyRequest(
        key_id=key.key_id, key_version_id=version.key_version_id, algorithm="SM2DSA",
        digest=digest, value=signature)).body.value

loaded = sorted(m for m in sys.modules if m.split(".")[0] == "byok_keeper")
print(json.dumps({"tried": Refuse.tried, "loaded": loaded, "health": health,
                  "verified": verified}))
"""


def test_the_emulator_imports_and_serves_sm2_without_byok_keeper():
    done = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, str(SHARED)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"tried": [], "loaded": [], "health": True, "verified": True}
