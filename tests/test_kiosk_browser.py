"""The kiosk page in a real headless Chromium (Debian's `chromium`, driven by Playwright; no browser
download): it shows the newest step, a new step replaces the caption, and a screenshot is saved.

This test fails, never skips, when Chromium is missing: CI installs it (apt-get install chromium).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.gallery_helpers import append_step, config, make_chain
from zoetrope.gallery.serve import ServerThread, create_app

# e2e: a real server and a real browser
pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    found = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    assert found, "Chromium is not installed: `apt-get install -y chromium` (the kiosk test needs a real browser)"
    return found


def test_the_page_shows_each_new_step(tmp_path):
    from playwright.sync_api import sync_playwright

    chain = make_chain(tmp_path / "chain", ["a lighthouse at night"])
    cfg = config(display={"caption_effect": "type", "show_step": True, "crossfade_s": 0.2})
    server = ServerThread(create_app(chain, config=cfg), "127.0.0.1", 0).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=FLAGS,
                                        timeout=30_000)
            try:
                page = browser.new_page(viewport={"width": 800, "height": 450})
                page.goto(f"http://127.0.0.1:{server.port}/", timeout=15_000)
                page.wait_for_function(
                    "document.querySelector('#caption').textContent === 'a lighthouse at night'", timeout=10_000)
                assert page.get_attribute("#caption", "dir") == "auto"
                assert page.text_content("#step-number") == "1"
                append_step(chain, "ساعة في الحديقة")  # right-to-left text
                page.wait_for_function(
                    "document.querySelector('#caption').textContent === 'ساعة في الحديقة'", timeout=10_000)
                assert page.text_content("#step-number") == "2"
                shown = page.eval_on_selector_all(".layer.on", "els => els.map(e => e.getAttribute('src'))")
                assert len(shown) == 1 and "/chain/step-000002.png?v=" in shown[0]
                natural = page.eval_on_selector(".layer.on", "e => [e.naturalWidth, e.complete]")
                assert natural == [64, True]
                page.screenshot(path=str(tmp_path / "kiosk.png"))

                # the generator (and its server) restarts: the page keeps the last image, then reconnects
                port = server.port
                server.stop()
                page.wait_for_function("document.body.dataset.connected === 'no'", timeout=10_000)
                assert "/chain/step-000002.png" in page.get_attribute(".layer.on", "src")
                assert page.text_content("#caption") == "ساعة في الحديقة"
                append_step(chain, "the loop came back")
                server = ServerThread(create_app(chain, config=cfg), "127.0.0.1", port).start()
                page.wait_for_function(
                    "document.querySelector('#caption').textContent === 'the loop came back'", timeout=15_000)
            finally:
                browser.close()
    finally:
        server.stop()
    assert (tmp_path / "kiosk.png").stat().st_size > 1000
