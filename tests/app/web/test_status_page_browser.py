"""The status page in a real headless Chromium: decisions shown as text, live updates
without a reload, a layout that fits a phone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from app.demo.service import bind_loopback
from gates.engine import Decision
from tests.app.web.status_fakes import (
    FakeCatalog,
    FakeChecks,
    FakeLoaded,
    FakeScheduler,
    make_gate,
    status_app,
    verdict,
)
from tests.support import require_binary

pytestmark = pytest.mark.chromium

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DEADLINE_S = 20.0


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    return require_binary("chromium")


@contextlib.asynccontextmanager
async def serving(app: object) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields its base URL."""
    sock = bind_loopback(0)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + DEADLINE_S
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE_S)
        sock.close()


def screenshot_dirs(tmp_path: Path) -> list[Path]:
    dirs = [tmp_path]
    if os.environ.get("GONOGO_SCREENSHOT_DIR"):
        dirs.append(Path(os.environ["GONOGO_SCREENSHOT_DIR"]))
    return dirs


async def test_cards_show_decisions_and_update_live_without_reload(tmp_path: Path) -> None:
    executable = chromium_path()
    from playwright.async_api import async_playwright

    catalog = FakeCatalog(
        [
            FakeLoaded(make_gate("portal")),
            FakeLoaded(make_gate("billing", description="Billing canary")),
            FakeLoaded(make_gate("records", description="Records migration")),
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
                "id": "c-1",
                "gate": "portal",
                "version": "2.4.1",
                "environment": "production",
                "stage": "blue-green",
                "created_at": "2026-11-24T09:58:00Z",
                "latest": {"decision": "no_go"},
                "missing_signoffs": ["uat"],
            }
        ]
    )
    app = status_app(catalog, scheduler, checks)
    async with serving(app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(base_url + "/")

            async def decision_of(gate: str) -> str:
                text = await page.text_content(f'[data-gate="{gate}"] .decision-text')
                return (text or "").strip()

            assert await decision_of("portal") == "GO"
            assert await decision_of("billing") == "NO GO"
            assert await decision_of("records") == "ROLLBACK"
            assert "uat" in (await page.text_content("#check-list") or "")

            # The script has taken over once the server's ISO time became a local time.
            await page.wait_for_function(
                "() => !document.getElementById('updated').textContent.includes('T')",
                timeout=DEADLINE_S * 1000,
            )
            for directory in screenshot_dirs(tmp_path):
                directory.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(directory / "status-page.png"), full_page=True)
            assert (tmp_path / "status-page.png").stat().st_size > 10_000

            await page.evaluate("window.__notReloaded = true")
            scheduler.verdicts["portal"] = verdict("portal", Decision.ROLLBACK, 0.90, passes=0)
            await page.wait_for_selector(
                '[data-gate="portal"].decision-rollback', timeout=DEADLINE_S * 1000
            )
            assert await decision_of("portal") == "ROLLBACK"
            assert await page.evaluate("window.__notReloaded") is True
            announced = await page.text_content("#announcer") or ""
            assert "portal: GO to ROLLBACK" in announced
            colour = await page.eval_on_selector(
                '[data-gate="portal"]', "card => getComputedStyle(card).borderLeftColor"
            )
            assert colour == "rgb(180, 35, 24)"
            assert errors == []

            # A phone-sized screen: cards stack, nothing overflows the page width.
            await page.set_viewport_size({"width": 390, "height": 844})
            overflow = await page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0
        finally:
            await browser.close()
