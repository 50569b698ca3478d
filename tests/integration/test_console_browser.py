"""The console in a real browser: headless Chromium from Debian's packages (``scripts/ensure-
chromium``), driven by Playwright with the system executable (it never downloads one). Sign in,
filter, open a decision, see its exemplars, label it, find the label through the API, sign
out; a screenshot of each page goes to the test output (``$SDM_ROUTER_TEST_OUTPUT``, by default
``build/test-output``), under ``console/``. Skips with the reason when Playwright or Chromium is
missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.console import ALICE, OPS, console_gateway
from tests.support.fake_upstream import FakeUpstream
from tests.support.keys import bearer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium (Debian's chromium and "
        "chromium-driver)",
        allow_module_level=True,
    )
OUTPUT = Path(os.environ.get("SDM_ROUTER_TEST_OUTPUT", "build/test-output")) / "console"
VIEWPORT = {"width": 1366, "height": 860}  # a laptop screen


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def shot(page: Any, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def test_sign_in_filter_open_label_and_sign_out_in_chromium(
    browser: Any, upstream: tuple[str, FakeUpstream], tmp_path: Path
) -> None:
    with console_gateway(upstream[0], tmp_path) as base:
        page = browser.new_page(viewport=VIEWPORT)
        scripts_ran: list[str] = []
        page.on("dialog", lambda dialog: scripts_ran.append(dialog.message))
        page.goto(f"{base}/console/decisions")
        assert page.url.endswith("/console/sign-in")  # no page without a session
        shot(page, "sign-in")
        page.fill("#key", OPS)
        page.click("#sign-in")
        page.wait_for_url(f"{base}/console")
        assert "sdm_console_session" in {c["name"] for c in page.context.cookies()}
        assert page.locator("section.route svg.chart").count() >= 1
        shot(page, "overview")

        page.goto(f"{base}/console/decisions")
        page.select_option("select[name=decision]", "accept")
        page.fill("input[name=q]", "six times")
        page.click("#apply")
        page.wait_for_url("**/console/decisions?*")
        rows = page.locator("#decisions tbody tr")
        assert rows.count() == 1 and "alice-1" in rows.first.inner_text()
        shot(page, "decisions")

        page.click("text=alice-1")
        page.wait_for_url("**/console/decisions/alice-1")
        exemplars = page.locator("#exemplars tbody tr")
        assert exemplars.count() == 8
        assert page.locator('#exemplars a[href="/console/decisions/support-0"]').count() == 1
        page.fill("#note", "checked by hand")
        page.click("#label-incorrect")
        page.wait_for_url("**/console/decisions/alice-1?saved=1")
        assert page.inner_text("#label") == "incorrect (human)"
        shot(page, "decision")

        record = httpx.get(f"{base}/v1/decisions/alice-1", headers=bearer(OPS), timeout=10)
        assert record.json()["label"] == {"label": "incorrect", "source": "human"}

        # an answer with <script> renders as text: no script ran, the title stayed ours
        page.goto(f"{base}/console/decisions/support-0")
        assert "pwned" not in page.title() and not scripts_ran
        assert "<script>" in page.inner_text("#answer")

        page.goto(f"{base}/console/review")
        queued = page.locator("#queue tr.item").count()
        assert queued >= 1
        first = page.locator("#queue tr.item").first.get_attribute("data-href")
        with page.expect_navigation():  # the URL stays the same: wait for the form's reply
            page.keyboard.press("c")  # the shortcut labels the first queued decision correct
        assert page.locator("#queue tr.item").count() == queued - 1
        assert page.locator(f'#queue tr.item[data-href="{first}"]').count() == 0
        shot(page, "review")
        page.goto(f"{base}/console/artifacts")
        assert page.locator("#no-autopilot").count() == 1
        shot(page, "artifacts")

        page.click("#sign-out")
        page.wait_for_url("**/console/sign-in")
        page.goto(f"{base}/console")
        assert page.url.endswith("/console/sign-in")

        # a user key's session sees its own decisions only
        page.fill("#key", ALICE)
        page.click("#sign-in")
        page.wait_for_url(f"{base}/console")
        page.goto(f"{base}/console/decisions")
        listed = page.inner_text("#decisions")
        assert "alice-1" in listed and "bob-1" not in listed
