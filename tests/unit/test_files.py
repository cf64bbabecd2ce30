"""files.replace_atomically: the one way envelopes, the report, metrics files and the health
file are replaced."""

import os
import stat

import pytest

from byok_keeper.domain.files import replace_atomically


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_the_file_is_replaced_whole_with_its_mode_whatever_the_umask(tmp_path, mode):
    target = tmp_path / "out"
    target.write_bytes(b"old")
    old_umask = os.umask(0o000)
    try:
        replace_atomically(target, b"new", mode)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out"
    target.mkdir()  # os.replace of a file over a directory fails
    with pytest.raises(OSError):
        replace_atomically(target, b"new", 0o600)
    assert target.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
