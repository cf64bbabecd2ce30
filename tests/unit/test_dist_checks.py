"""deploy/dist.py's checks refuse what they exist to refuse (tests/e2e/test_distributions.py
builds the real distributions and shows they pass): bad core metadata, a readme that is not
Markdown, a wheel whose files do not match its RECORD, the emulator inside byok-keeper's wheel,
a version with no CHANGELOG section."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("byok_dist", ROOT / "deploy" / "dist.py")
dist = importlib.util.module_from_spec(_spec)
sys.modules["byok_dist"] = dist  # its dataclasses look themselves up there
_spec.loader.exec_module(dist)

GOOD = (
    "Metadata-Version: 2.4\nName: byok-keeper\nVersion: 0.1.0\nRequires-Python: >=3.10\n"
    "License-Expression: Apache-2.0\nDescription-Content-Type: text/markdown\n\n# byok-keeper\n"
)


def _wheel(path: Path, files: dict[str, bytes], metadata: str = GOOD, tamper: str = "") -> Path:
    files = {**files, "byok_keeper-0.1.0.dist-info/METADATA": metadata.encode()}
    rows = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(data)}")
    rows.append("byok_keeper-0.1.0.dist-info/RECORD,,")
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data + (b"#" if name == tamper else b""))
        zf.writestr("byok_keeper-0.1.0.dist-info/RECORD", "\n".join(rows) + "\n")
    return path


def _sdist(path: Path, metadata: str = GOOD) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = metadata.encode()
        info = tarfile.TarInfo("byok_keeper-0.1.0/PKG-INFO")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def _check(tmp_path, files, **kw):
    project = dist.PROJECTS[0]
    wheel = _wheel(tmp_path / "byok_keeper-0.1.0-py3-none-any.whl", files, **kw)
    return dist.check(project, _sdist(tmp_path / "byok_keeper-0.1.0.tar.gz"), wheel,
                      {"byok-keeper": "0.1.0"})  # fmt: skip


def test_a_well_formed_pair_passes(tmp_path):
    meta = _check(tmp_path, {"byok_keeper/__init__.py": b"x = 1\n"})
    assert str(meta.version) == "0.1.0"


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        (GOOD.replace("Version: 0.1.0", "Version: one"), "invalid metadata"),
        (GOOD.replace("Name: byok-keeper", "Name: byok keeper!"), "invalid metadata"),
        (GOOD.replace("text/markdown", "text/x-rst"), "not Markdown"),
        (GOOD.replace("# byok-keeper\n", ""), "no long description"),
    ],
)
def test_bad_metadata_is_refused_in_one_line(metadata, says):
    with pytest.raises(dist.DistError, match=says) as caught:
        dist.check_metadata(metadata.encode(), "x.whl")
    assert "\n" not in str(caught.value)


def test_a_file_that_differs_from_its_record_is_refused(tmp_path):
    with pytest.raises(dist.DistError, match="does not match its RECORD"):
        _check(tmp_path, {"byok_keeper/__init__.py": b"x = 1\n"}, tamper="byok_keeper/__init__.py")


def test_the_emulator_inside_the_byok_keeper_wheel_is_refused(tmp_path):
    files = {"byok_keeper/__init__.py": b"", "aliyun_local/__init__.py": b""}
    with pytest.raises(dist.DistError, match=r"carries \['aliyun_local', 'byok_keeper'\]"):
        _check(tmp_path, files)


def test_a_version_without_a_changelog_section_is_refused():
    dist.check_changelog(dist.tree_version("byok_keeper"))
    with pytest.raises(dist.DistError, match="CHANGELOG.md has no '## 9.9.9"):
        dist.check_changelog("9.9.9")
