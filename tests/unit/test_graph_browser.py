"""The SVG as a real browser draws it: headless Chromium takes a screenshot, and the picture is checked.

Skipped (not failed) where no Chromium is installed: the SVG needs no browser to be made, only to be looked at.
The PNG is decoded here with zlib (no imaging library): it must have the window's size, a drawing on most of
it (not a blank or an error page), and the privileged role's red, which only the SVG's marking can put there.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from adp_identity.desired import load_tree
from adp_identity.graph import svg
from adp_identity.graph.model import from_desired
from tests.unit.test_graph import write_demo_tree

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
WIDTH, HEIGHT = 1100, 560
PRIVILEGED_RED = (0xC0, 0x39, 0x2B)


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit truecolour PNG, filters undone (PNG spec, section 9)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, header = 8, b"", b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format (depth {depth}, colour type {colour})"
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(row[i] for i in range(len(row)) if i % channels < 3) for row in rows]


def test_chromium_draws_the_svg_with_its_privileged_role_marked(tmp_path: Path) -> None:
    state = load_tree(write_demo_tree(tmp_path / "stacks"), "demo")["demo"]
    drawing = tmp_path / "graph.svg"
    drawing.write_text(svg.render(from_desired(state)), encoding="utf-8")
    screenshot = tmp_path / "graph.png"
    assert CHROMIUM is not None
    completed = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            f"--window-size={WIDTH},{HEIGHT}",
            drawing.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    data = screenshot.read_bytes()
    assert len(data) > 10_000, f"a {len(data)}-byte screenshot is no drawing"
    width, height, rows = decode_png(data)
    assert (width, height) == (WIDTH, HEIGHT)
    pixels = [tuple(row[i : i + 3]) for row in rows for i in range(0, len(row), 3)]
    drawn = sum(1 for pixel in pixels if pixel != (255, 255, 255))
    assert drawn / len(pixels) > 0.05, "almost nothing was drawn"
    assert len(set(pixels)) > 50, "a handful of colours: not the graph"
    red = sum(
        1
        for r, g, b in pixels
        if abs(r - PRIVILEGED_RED[0]) < 24 and abs(g - PRIVILEGED_RED[1]) < 24 and abs(b - PRIVILEGED_RED[2]) < 24
    )
    assert red > 200, "the privileged role's red frame is not on the screen"
