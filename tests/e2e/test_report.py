"""``byok-keeper report --html``: one self-contained page, rendered by headless Chromium and
checked from the screenshot; and the page at 5,000 keys."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone

import pytest

from byok_keeper.operations.report import COLOURS, LABEL_W, WINDOW_COLOUR, render_html, write_html
from tests.chromium import Image, find_chromium, screenshot
from tests.e2e.conftest import run_cli
from tests.fleet import synthetic_fleet

BODY_MARGIN = 16  # the page's CSS margin: the time axis starts at BODY_MARGIN + LABEL_W
LEGEND_BOTTOM = 100  # the legend's swatches are the only flat colours above this


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium (``make chromium``; .ci/run installs it). In CI a missing browser
    fails the test loudly; elsewhere the test is skipped, saying why."""
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: `make chromium` should have installed it")
        pytest.skip("chromium is not installed (run `make chromium`, as root, to install it)")
    return binary


def enroll_here(served, env: dict[str, str], n: int) -> list[dict[str, str]]:
    """Enroll ``n`` EC_P256 keys (30d lease) into the CLI's vault, in-process: quicker than
    ``n`` CLI runs, and only ``report`` is under test here."""
    from pathlib import Path

    from byok_keeper.core.enroll import enroll
    from byok_keeper.crypto.material import generate_material
    from byok_keeper.domain.lease import parse_lease
    from byok_keeper.gateway.kms import ENROLL
    from byok_keeper.vault import FileStore, LocalKeySealer, Vault
    from tests.functional.conftest import create_request, make_gateway

    vault = Vault(
        FileStore(Path(env["BYOK_VAULT"].removeprefix("file://"))),
        LocalKeySealer.from_file(env["BYOK_SEAL_KEY_FILE"]),
    )
    gateway = make_gateway(served, ENROLL)
    keys = []
    for _ in range(n):
        result = enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
                        create=create_request())  # fmt: skip
        keys.append({"key_id": result.key_id, "fingerprint": result.fingerprint})
    return keys


def assert_self_contained(page: str) -> None:
    """No script, stylesheet, font, image or frame from anywhere: the page works offline."""
    for needle in ("http://", "https://", "<script", "<link", "@import", "url(", "<img", "src="):
        assert needle not in page, needle
    assert "PRIVATE KEY" not in page and not re.search(r"[A-Za-z0-9+/=]{80,}", page)


def test_report_draws_the_fleet(chromium, cli_env, served, tmp_path):
    ok, gone, held = enroll_here(served, cli_env, 3)
    kms = served.emulator.kms
    kms.delete_key_material(gone["key_id"])
    kms.tag_key(held["key_id"], {"byok-keeper:hold": "INC-17"})
    page_path = tmp_path / "fleet.html"

    out = run_cli("report", "--html", str(page_path), "--output", "json", env=cli_env)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["keys"] == 3
    assert summary["decisions"] == {"OK": 1, "REIMPORT": 1, "HOLD": 1}
    page = page_path.read_text()
    assert_self_contained(page)
    for key in (ok, gone, held):
        assert key["key_id"] in page
        assert key["fingerprint"] not in page  # ids, not identities, and never material
    assert "next sweep" in page and "on hold: INC-17" in page

    png = tmp_path / "fleet.png"
    screenshot(page_path, png, width=1240, height=800)
    image = Image(png)
    chart_x = BODY_MARGIN + LABEL_W

    def drawn(colour: str) -> list[tuple[int, int]]:
        return [(x, y) for x, y in image.where(colour) if y > LEGEND_BOTTOM]

    green, purple, orange = drawn(COLOURS["OK"]), drawn(COLOURS["HOLD"]), drawn(COLOURS["REIMPORT"])
    amber = drawn(WINDOW_COLOUR)
    assert green and purple and orange and amber, "a decision colour or the window is missing"
    # Groups run most urgent first: REIMPORT above HOLD above OK.
    assert max(y for _, y in orange) < min(y for _, y in purple)
    assert max(y for _, y in purple) < min(y for _, y in green)
    # Bars start at "now", the left end of the axis, and the 30-day keys reach well past it.
    assert abs(min(x for x, _ in green) - chart_x) <= 2
    assert max(x for x, _ in green) - chart_x > 400
    # The renewal window is shaded at the end of the bar, behind it.
    assert max(x for x, _ in amber) == pytest.approx(max(x for x, _ in green), abs=3)
    # The hold's pause mark sits left of the axis, in the label column.
    assert any(x < chart_x for x, _ in purple)
    # The key without material is a square at "now", not a bar.
    assert chart_x - 1 <= min(x for x, _ in orange) and max(x for x, _ in orange) <= chart_x + 11


def test_report_at_5000_keys_stays_small_and_renders(chromium, tmp_path):
    now = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)
    fleet = synthetic_fleet(5000, now)
    started = time.perf_counter()
    page = render_html(fleet)
    assert time.perf_counter() - started < 5
    size = write_html(tmp_path / "big.html", page)
    assert size < 1_000_000, size
    assert_self_contained(page)
    # Every decision's group is there, each drawn row by row up to the cap, the rest counted.
    counts = {d: sum(1 for r in fleet.rows if r.decision == d) for d in COLOURS}
    for decision, n in counts.items():
        assert f">{decision}: {n:,} keys" in page
    assert f"and {counts['OK'] - 200:,} more OK keys" in page
    assert page.count("<title>key-") <= 6 * 200

    started = time.perf_counter()
    screenshot(tmp_path / "big.html", tmp_path / "big.png", width=1240, height=900)
    assert time.perf_counter() - started < 30, "the page is too slow to draw"
    image = Image(tmp_path / "big.png")
    assert image.distinct_colours() > 20, "a blank page"
    # The overview and the first (ALERT) group are on screen: red rows below the overview.
    red = [y for _, y in image.where(COLOURS["ALERT"]) if y > LEGEND_BOTTOM]
    assert len(red) > 500
