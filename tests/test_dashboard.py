"""The dashboard renders live data in headless Chromium (Debian's package).

Needs `chromium` (or `chromium-browser`) on PATH: the README's test command gets it with
scripts/install-browser; without one the test is skipped with the reason. The API runs as a
real `flashrec serve` process over a real PostgreSQL.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import free_port
from serving_support import WINDOW, api_process, fill_views

pytestmark = pytest.mark.e2e

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium on PATH: run scripts/install-browser (apt-get install "
                    "chromium, as root), or install Chromium yourself")
    return found


def _browse(chromium: str, url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=6000", *extra, url],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and raw RGB(A) rows of an 8-bit non-interlaced PNG (Chromium's)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_dashboard_renders_live_data(chromium, dsn: str, tmp_path) -> None:
    fill_views(dsn)
    args = ["--pg-dsn", dsn, "--source", "embedded", "--data-dir", str(tmp_path / "data")]
    with api_process(args, free_port(), tmp_path / "api.log") as url:
        dom = _browse(chromium, url + "/", tmp_path, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-500:]
        html = dom.stdout
        # trending cards, latest window only, in rank order
        assert 'data-category="shoes"' in html and 'data-category="jackets"' in html
        shoes = html[html.index('data-category="shoes"') :]
        assert shoes.index("Trail Shoe (p1)") < shoes.index("Road Shoe (p2)")
        # also-viewed and the pipeline status; the page only reads: no click, no session
        assert 'class="also-item"' in html
        assert 'id="session-hint"' in html and 'class="rec-item"' not in html
        metrics = httpx.get(url + "/metrics", timeout=10).text
        assert "/v1/trending" in metrics and "/v1/sessions/{session_id}/clicks" not in metrics
        assert 'id="status-table"' in html and "co_view_pairs" in html
        assert "5 sessions" in html  # index built from vmis_history

        # a new trending window appears on the page without any change to the page
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO trending_by_category VALUES "
                "('shoes', 1, 'p9', 'Flash Deal Sneaker', 500, 400, 20, %s)",
                (WINDOW + timedelta(minutes=5),),
            )
        again = _browse(chromium, url + "/", tmp_path, "--dump-dom").stdout
        assert "Flash Deal Sneaker (p9)" in again
        shoes_card = again.split('data-category="shoes"')[1].split("</div>")[0]
        assert "Flash Deal Sneaker" in shoes_card and "Trail Shoe" not in shoes_card

        shot = tmp_path / "dashboard.png"
        done = _browse(chromium, url + "/", tmp_path, f"--screenshot={shot}",
                       "--window-size=1280,1000")  # fmt: skip
        assert done.returncode == 0 and shot.is_file(), done.stderr[-500:]
        width, height, rows = _png_pixels(shot)
        assert (width, height) == (1280, 1000)
        colours = {row[x : x + 3] for row in rows[::10] for x in range(0, len(row), 30)}
        assert len(colours) > 20  # text, cards and the accent colour, not a blank page
        dark = sum(1 for row in rows[60:300] for x in range(0, len(row), 3) if row[x] < 80)
        assert dark > 500  # text drawn in the trending area
