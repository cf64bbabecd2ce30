"""The reliability figures are decided from observations, not from what a test claims."""

from __future__ import annotations

from tests.figures import blocks, key_ok, observe, summarise, write, wrong_material

GOOD = "a" * 64


def _view(state="Enabled", fp=GOOD, has=True, imports=2):
    return lambda _key_id: {"state": state, "material_fingerprint": fp, "has_material": has,
                            "import_count": imports}  # fmt: skip


def _fault(view, final="restored", **extra):
    return {"kind": "fault", "path": "sweep", "action": "ImportKeyMaterial", "code": "X",
            "fired": True, "first_run": final, "final_run": final,
            "key": observe(view, "key-1", GOOD), **extra}  # fmt: skip


def test_a_key_survives_only_enabled_with_the_enrolled_material_after_a_good_run():
    lines = [
        _fault(_view()),
        _fault(_view(state="PendingImport", has=False)),
        _fault(_view(fp="b" * 64)),
        _fault(_view(), final="failed"),
    ]
    text = summarise(lines)
    assert "**1/4**" in text
    assert "other material than the vault's | **1**" in text
    assert [key_ok(f["key"]) for f in lines] == [True, False, False, True]
    assert [wrong_material(f["key"]) for f in lines] == [False, False, True, False]


def test_a_constant_claim_in_a_record_is_ignored():
    lying = _fault(_view(state="Disabled"), survived=True, wrong_material=False)
    assert "**0/1**" in summarise([lying])


def test_an_unreadable_key_is_an_observation():
    def gone(_key_id):
        raise KeyError("gone")

    seen = observe(gone, "key-1", GOOD)
    assert seen["state"].startswith("unreadable") and not key_ok(seen)


def test_generated_blocks_replace_only_their_markers(tmp_path):
    doc = tmp_path / "R.md"
    doc.write_text("intro\n<!-- figures:fault -->\nold 168/168\n<!-- /figures:fault -->\nend\n")
    assert write(doc, [_fault(_view())]) == ["fault"]
    text = doc.read_text()
    assert "old 168/168" not in text and "**1/1**" in text
    assert text.startswith("intro\n") and text.endswith("end\n")
    assert set(blocks([_fault(_view())])) == {"fault"}
