"""A site's own vault store or sealer, added through an installed entry point (vault/registry.py):
a real distribution (``*.dist-info`` with ``entry_points.txt``) on ``sys.path``, the CLI run in a
subprocess as a site would run it. A broken plugin is one line naming it (exit 2, no traceback);
a plugin named like a built-in is refused; built-ins never read entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = """
from pathlib import Path

from byok_keeper.vault.registry import SealerBackend, StoreBackend
from byok_keeper.vault.stores import FileStore


def dir_store(uri):
    return FileStore(Path(uri.split("://", 1)[1]))


STORE = StoreBackend("sitedir", dir_store)
SEALER = SealerBackend("site-hsm", lambda value: None)
NOT_A_BACKEND = "nothing"
"""


def _site(root: Path, entry_points: str) -> Path:
    """A directory holding the plugin module and one installed distribution declaring
    ``entry_points``: what ``pip install`` of a site's package leaves on ``sys.path``."""
    root.mkdir()
    (root / "site_plugin.py").write_text(PLUGIN)
    (root / "site_broken.py").write_text("raise ImportError('libsite.so: cannot open')\n")
    info = root / "site_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: site-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYOK_", "ALIBABA_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "byok_keeper.runtimes.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


GOOD = """
[byok_keeper.stores]
sitedir = site_plugin:STORE
broken = site_broken:STORE
wrong = site_plugin:NOT_A_BACKEND

[byok_keeper.sealers]
site-hsm = site_plugin:SEALER
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return _site(tmp_path / "site", GOOD)


def test_a_store_plugin_serves_its_own_uri_scheme(site, tmp_path):
    vault = tmp_path / "vault"
    vault.mkdir()
    out = _run(site, "--vault", f"sitedir://{vault}", "vault", "list", "--output", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"keys": [], "vault": f"file://{vault}"}


@pytest.mark.parametrize(
    ("scheme", "says"),
    [
        ("broken", "plugin 'broken' (site_broken:STORE) failed to load: ImportError: libsite.so"),
        ("wrong", "plugin 'wrong' (site_plugin:NOT_A_BACKEND) is not a StoreBackend"),
    ],
)
def test_a_broken_store_plugin_is_one_line_naming_it(site, scheme, says):
    out = _run(site, "--vault", f"{scheme}://x", "vault", "list")
    assert out.returncode == 2
    assert out.stdout == ""
    assert says in out.stderr and "byok_keeper.stores" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_a_scheme_nobody_provides_is_refused_as_before(site):
    out = _run(site, "--vault", "nobody://x", "vault", "list")
    assert out.returncode == 2
    assert out.stderr.strip().endswith(
        "invalid vault URI 'nobody://x': expected file://DIR or kms-secrets://PREFIX"
    )


def test_a_plugin_cannot_replace_a_built_in(tmp_path):
    site = _site(tmp_path / "site", "[byok_keeper.stores]\nfile = site_plugin:STORE\n")
    vault = tmp_path / "vault"
    vault.mkdir()
    builtin = _run(site, "--vault", f"file://{vault}", "vault", "list", "--output", "json")
    assert builtin.returncode == 0, builtin.stderr  # built-ins never read entry points
    assert json.loads(builtin.stdout)["vault"] == f"file://{vault}"
    other = _run(site, "--vault", "other://x", "vault", "list")
    assert other.returncode == 2
    assert "plugin 'file' (site_plugin:STORE) would replace the built-in 'file': refused" in (
        other.stderr
    )


def test_a_sealer_plugin_is_a_kind_envelopes_may_name(site):
    code = (
        "from byok_keeper.vault.registry import sealer_backend\n"
        "print(sealer_backend('site-hsm').kind, sealer_backend('nobody'))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["site-hsm", "None"]


def test_the_registry_names_what_each_built_in_needs():
    from byok_keeper.vault.registry import needs_kms, sealer_backend, store_backend

    assert store_backend("/srv/vault").scheme == "file" and store_backend("/srv/v").shared
    secrets = store_backend("kms-secrets://byok/")
    assert secrets.needs_kms and not secrets.shared
    assert [sealer_backend(k).needs_kms for k in ("local", "kms", "pkcs11")] == [False, True, False]
    assert needs_kms("kms-secrets://byok/") and not needs_kms("file:///srv/vault")
    assert needs_kms("/srv/vault", ("seal_kms_key_id", "key-1"))
    assert not needs_kms("/srv/vault", ("seal_key_file", "/k"), ("seal_kms_key_id", None))
