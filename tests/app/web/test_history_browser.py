"""History on the status page and the check page in a real headless Chromium: the
timeline and sparklines render as SVG and survive the live redraws, the check page
renders, and nothing overflows a 390 px wide phone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.core.db import Database
from app.core.migrate import upgrade_database
from gates.engine import Decision
from tests.app.web.history_fakes import FINAL_ID, seed_checks, seed_history, slow_gate
from tests.app.web.status_fakes import (
    FakeCatalog,
    FakeChecks,
    FakeLoaded,
    FakeScheduler,
    make_gate,
    status_app,
    verdict,
)
from tests.app.web.test_status_page_browser import (
    CHROMIUM_ARGS,
    DEADLINE_S,
    chromium_path,
    screenshot_dirs,
    serving,
)

pytestmark = pytest.mark.chromium

PHONE = {"width": 390, "height": 844}
LONG_VERSION = "2026.11.24-build.48213+sha.9f3c1e2a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a"


@pytest.fixture
async def history_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gonogo.db'}"
    await upgrade_database(url)
    db = Database(url)
    await seed_history(db)
    await seed_history(db, gate="records")
    await seed_checks(db)
    catalog = FakeCatalog(
        [
            FakeLoaded(slow_gate("portal")),
            FakeLoaded(make_gate("billing", description="Billing canary")),
            FakeLoaded(slow_gate("records", description="Records migration")),
        ]
    )
    scheduler = FakeScheduler(
        {
            "portal": verdict("portal", Decision.GO, 0.9995),
            "billing": verdict("billing", Decision.NO_GO, 0.998, passes=1),
            "records": verdict("records", Decision.ROLLBACK, 0.91, passes=0),
        }
    )
    checks = FakeChecks(
        [
            {
                "id": "a" * 32,
                "gate": "portal",
                "version": LONG_VERSION,
                "environment": "production-eu-west-clinical",
                "stage": "blue-green-switch",
                "created_at": "2026-11-24T09:57:00Z",
                "latest": {"decision": "no_go"},
                "missing_signoffs": ["uat", "clinical-safety-officer", "data-checked"],
            }
        ]
    )
    app = status_app(catalog, scheduler, checks)
    app.state.db = db
    try:
        yield app
    finally:
        await db.dispose()


async def _overflow(page: object) -> int:
    """How far the page, or any table in its scrolling box, is wider than it may be."""
    result: int = await page.evaluate(  # type: ignore[attr-defined]
        """() => Math.max(
          document.documentElement.scrollWidth - window.innerWidth,
          ...Array.from(document.querySelectorAll('.table-wrap'),
                        w => w.scrollWidth - w.clientWidth))"""
    )
    return result


async def test_timelines_and_sparklines_render_and_survive_live_redraws(
    history_app: FastAPI, tmp_path: Path
) -> None:
    executable = chromium_path()
    from playwright.async_api import async_playwright

    async with serving(history_app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(base_url + "/")

            order = await page.eval_on_selector_all(
                "#gate-list [data-gate]", "cards => cards.map(c => c.dataset.gate)"
            )
            assert order == ["records", "billing", "portal"]

            async def counts() -> dict[str, int]:
                found: dict[str, int] = await page.evaluate(
                    """() => ({
                      bands: document.querySelectorAll('#gate-list svg.band').length,
                      spans: document.querySelectorAll('[data-gate="portal"] svg.band rect').length,
                      sparks: document.querySelectorAll('#gate-list svg.spark').length,
                      lines: document.querySelectorAll('#gate-list svg.spark polyline').length,
                      thresholds: document.querySelectorAll('#gate-list svg.spark line').length,
                      recent: document.querySelectorAll('#recent tr[data-recent]').length,
                    })"""
                )
                return found

            before = await counts()
            # 3 gates x (1 band, 2 sparklines); values for the two gates with samples;
            # thresholds: availability's go and rollback, latency's go, on every card.
            assert before == {
                "bands": 3,
                "spans": 5,
                "sparks": 6,
                "lines": 4,
                "thresholds": 9,
                "recent": 2,
            }
            width = await page.eval_on_selector(
                '[data-gate="portal"] svg.band', "svg => svg.getBoundingClientRect().width"
            )
            assert width > 200

            # status.js redraws every card from /status.json; the history stays.
            await page.wait_for_function(
                "() => !document.getElementById('updated').textContent.includes('T')",
                timeout=DEADLINE_S * 1000,
            )
            assert await counts() == before
            for directory in screenshot_dirs(tmp_path):
                directory.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(directory / "status-page.png"), full_page=True)
            assert (tmp_path / "status-page.png").stat().st_size > 20_000

            await page.set_viewport_size(PHONE)
            assert await _overflow(page) <= 0
            for directory in screenshot_dirs(tmp_path):
                await page.screenshot(path=str(directory / "status-page-phone.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()


async def test_the_check_page_renders_and_fits_a_phone(
    history_app: FastAPI, tmp_path: Path
) -> None:
    executable = chromium_path()
    from playwright.async_api import async_playwright

    async with serving(history_app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            response = await page.goto(f"{base_url}/checks/{FINAL_ID}")
            assert response is not None and response.status == 200
            assert (await page.text_content(".decision-text") or "").strip() == "ROLLBACK"
            assert await page.eval_on_selector_all("svg.band rect", "r => r.length") == 2
            assert await page.eval_on_selector_all("ol.samples li", "r => r.length") == 49
            # The hostile version is shown as text, never run.
            title = await page.text_content(".check-version") or ""
            assert title.startswith('<script>alert("x")</script>')
            for directory in screenshot_dirs(tmp_path):
                directory.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(directory / "check-page.png"), full_page=False)
            assert (tmp_path / "check-page.png").stat().st_size > 20_000

            await page.set_viewport_size(PHONE)
            assert await _overflow(page) <= 0

            missing = await page.goto(f"{base_url}/checks/{'0' * 32}")
            assert missing is not None and missing.status == 404
            assert "No such check" in (await page.text_content("main") or "")
            assert errors == []
        finally:
            await browser.close()
