"""The status page at / in headless Chromium (Debian's, driven by Playwright) while a demo
runs behind a bearer token: the page loads, shows rates per kind, drops and sinks, draws the
candle chart and the book of the chosen symbol from the query API, and keeps updating."""

import os
import shutil

import pytest

from conftest import ROOT, http_demo

TOKEN = "tw-page-0c5d9e2f"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    with http_demo(tmp_path_factory.mktemp("page"), env={"TICKWIRE_HTTP_TOKEN": TOKEN}) as port:
        yield f"http://127.0.0.1:{port}/"


def test_the_page_shows_the_engine_and_keeps_updating(page_url, tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 760})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_url + "#token=" + TOKEN)
        page.wait_for_function("Number(document.body.dataset.updates) >= 2", timeout=20_000)
        assert page.text_content("#state") == "live"
        # Rates per kind: the trade row is there with a rate above zero after two polls.
        page.wait_for_function(
            "[...document.querySelectorAll('#rates tbody tr')].some(r => r.cells[0].textContent === 'trade'"
            " && r.cells[1].textContent !== '0')", timeout=20_000)
        drops = page.text_content("#drops")
        assert "dropped at queue" in drops and "sequence gaps" in drops
        assert "parquet" in page.text_content("#sinks")
        # The chart and the book from the query API, through the token.
        page.wait_for_function("Number(document.getElementById('candles').dataset.candles) >= 2", timeout=20_000)
        page.wait_for_function("Number(document.getElementById('book').dataset.levels) >= 5", timeout=20_000)
        assert page.text_content("#chart-error") == "" and page.text_content("#book-error") == ""
        first = page.eval_on_selector("#candles", "c => c.dataset.lastOpenTime")
        n = int(page.evaluate("document.body.dataset.updates"))
        # Updating: more refreshes and a newer candle while the demo runs.
        page.wait_for_function(f"Number(document.body.dataset.updates) >= {n + 3}", timeout=20_000)
        page.wait_for_function(
            f"Number(document.getElementById('candles').dataset.lastOpenTime) > {first}", timeout=20_000)
        # Another symbol of the other market.
        page.select_option("#market", "usdm")
        page.fill("#symbol", "ETHUSDT")
        page.dispatch_event("#symbol", "change")
        page.wait_for_function("document.getElementById('book-source').textContent.includes('id')", timeout=20_000)
        page.screenshot(path=str(tmp_path / "status.png"))
        if os.environ.get("TICKWIRE_SCREENSHOT"):
            shutil.copy(tmp_path / "status.png", ROOT / "perf" / "plots" / "status-page.png")
        assert not errors, errors
        browser.close()


def test_without_the_token_the_page_says_it_cannot_read(page_url):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(page_url)
        page.wait_for_function("Number(document.body.dataset.updates) >= 1", timeout=20_000)
        assert "401" in page.text_content("#state")
        assert "401" in page.text_content("#chart-error")
        browser.close()
