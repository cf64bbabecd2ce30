"""Headless Chromium (Debian's ``chromium`` package, installed by ``make chromium``) as a
screenshot oracle for the fleet report, and a small PNG reader to look at what it drew.

Chromium is the one edge here: nothing of ours is replaced."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def screenshot(page: Path, png: Path, *, width: int, height: int, timeout: float = 60) -> None:
    """Render ``page`` (a local file, no network) at ``width`` x ``height`` into ``png``."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (make chromium)")
    with tempfile.TemporaryDirectory(prefix="byok-chromium-") as profile:
        argv = [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-1000:]}")


class Image:
    """An 8-bit RGB or RGBA PNG, decoded (non-interlaced, as Chromium writes them)."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
        pos, idat = 8, bytearray()
        while pos < len(data):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
            if kind == b"IHDR":
                self.width, self.height, depth, colour, _, _, interlace = struct.unpack(
                    ">IIBBBBB", body
                )
                assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour)
                self.bpp = 3 if colour == 2 else 4
            elif kind == b"IDAT":
                idat += body
            pos += 12 + length
        self.rows = self._unfilter(zlib.decompress(bytes(idat)))

    def _unfilter(self, raw: bytes) -> list[bytes]:
        bpp, stride = self.bpp, self.width * self.bpp
        rows, prev = [], bytearray(stride)
        for y in range(self.height):
            start = y * (stride + 1)
            kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
            if kind == 1:
                for i in range(bpp, stride):
                    line[i] = (line[i] + line[i - bpp]) & 0xFF
            elif kind == 2:
                line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
            elif kind == 3:
                for i in range(stride):
                    left = line[i - bpp] if i >= bpp else 0
                    line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
            elif kind == 4:
                for i in range(stride):
                    a = line[i - bpp] if i >= bpp else 0
                    b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    line[i] = (line[i] + pred) & 0xFF
            rows.append(bytes(line))
            prev = line
        return rows

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = x * self.bpp
        r, g, b = self.rows[y][i : i + 3]
        return r, g, b

    def where(self, colour: str) -> list[tuple[int, int]]:
        """Every (x, y) painted exactly ``#rrggbb`` (flat fills are exact; edges blend)."""
        want = bytes.fromhex(colour.lstrip("#"))
        out = []
        for y, row in enumerate(self.rows):
            i = row.find(want)
            while i != -1:
                if i % self.bpp == 0:
                    out.append((i // self.bpp, y))
                i = row.find(want, i + 1)
        return out

    def distinct_colours(self) -> int:
        seen = set()
        for row in self.rows[:: max(1, self.height // 200)]:
            for x in range(0, self.width, 3):
                seen.add(row[x * self.bpp : x * self.bpp + 3])
        return len(seen)
