"""The gallery page in a real browser: headless Chromium (Debian's ``chromium`` package).

The page runs its own check when opened as ``index.html#selftest``: it forces every lazy image
to load, records which ones fail (``naturalWidth == 0``), clicks the first tile, checks that the
large view opens with its image and command, and writes the result into the DOM, which
``--dump-dom`` prints. Skipped, with a message, where Chromium is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from dreamviz import gallery
from dreamviz.commands.gallery import reproduce

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium not found: install it (apt-get install chromium) to run the browser test")


def _chromium(browser: str, url: str, tmp_path, *extra: str) -> str:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        *extra,
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _selftest(browser: str, index, tmp_path) -> dict:
    dom = _chromium(browser, index.as_uri() + "#selftest", tmp_path, "--dump-dom")
    m = re.search(r'<pre id="selftest-result">(.*?)</pre>', dom, re.S)
    assert m, "the page's self-check did not run: " + dom[-500:]
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def site(lite0, tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    gallery.build(
        lite0,
        ["blocks.3"],
        "0-3",
        classes="1",
        size=32,
        steps=2,
        batch=5,
        out=out,
        progress=False,
        reproduce=reproduce,  # the commands the CLI's pages show
    )
    return out


def test_every_image_loads_and_the_large_view_opens(site, tmp_path):
    browser = _browser()
    r = _selftest(browser, site / "index.html", tmp_path)
    assert r["units"] == 5 and r["images"] == 5 and r["lazy"] == 5
    assert r["broken"] == [] and r["viewer"] and r["big_image"]
    assert r["command"] == "dreamviz render --from blocks.3/0000.png -o blocks.3_0.png"
    assert r["ok"] is True

    shot = tmp_path / "gallery.png"
    _chromium(
        browser,
        (site / "index.html").as_uri(),
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=900,700",
    )
    with Image.open(shot) as img:
        assert img.size == (900, 700)
        # the page is not blank: the rendered tiles put many colours on it
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20)) > 200


def test_a_broken_image_is_caught(site, tmp_path):
    browser = _browser()
    broken = shutil.copytree(site, tmp_path / "broken")
    (broken / "blocks.3/0002.png").write_bytes(b"not a png")
    r = _selftest(browser, broken / "index.html", tmp_path)
    assert r["ok"] is False and len(r["broken"]) == 1 and "blocks.3/0002.png" in r["broken"][0]


def test_without_reproduce_the_view_shows_the_settings_only(site, tmp_path):
    """A page built from Python without ``reproduce`` has no commands: the large view still
    opens, with its settings, and the command boxes and Copy button are hidden."""
    browser = _browser()
    plain = shutil.copytree(site, tmp_path / "plain")
    manifest = json.loads((plain / "manifest.json").read_text())
    (plain / "index.html").write_text(gallery.render_html(manifest, len(manifest["units"])))
    r = _selftest(browser, plain / "index.html", tmp_path)
    assert r["ok"] is True and r["viewer"] and r["big_image"] and r["command"] == ""
    dom = _chromium(browser, (plain / "index.html").as_uri() + "#view=0", tmp_path, "--dump-dom")
    for box in ("again", "again-alt"):
        assert re.search(rf'<div class="{box}" hidden="">', dom), box
    assert '<button class="copy" hidden="">' in dom
    assert re.search(r'<pre class="recipe">\{\n "unit": "blocks.3:0"', dom)
