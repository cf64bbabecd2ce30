"""The fleet report at scale: render a synthetic fleet of N keys, write the page, and time a
headless Chromium screenshot of it (Debian's chromium; make chromium).

    python bench/report.py --keys 5000
    python bench/report.py --keys 40 --png docs/report.png     # docs/OPERATE.md's screenshot
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fleet, tests.chromium

from tests.chromium import screenshot  # noqa: E402
from tests.fleet import synthetic_fleet  # noqa: E402

from byok_keeper.operations.report import render_html, write_html  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--png", type=Path, help="Keep the screenshot here.")
    parser.add_argument("--width", type=int, default=1240)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    now = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)
    fleet = synthetic_fleet(args.keys, now)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        started = time.perf_counter()
        size = write_html(page, render_html(fleet))
        rendered = time.perf_counter() - started
        png = args.png or Path(tmp) / "report.png"
        started = time.perf_counter()
        screenshot(page, png, width=args.width, height=args.height)
        shot = time.perf_counter() - started
    print(
        f"keys {args.keys:,}: page {size / 1024:,.0f} KiB, render {rendered * 1000:,.0f} ms, "
        f"chromium screenshot {shot:,.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
