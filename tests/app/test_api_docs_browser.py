"""``/docs`` renders in a real headless Chromium that may reach nothing but gonogo."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.core.settings import load_settings
from app.main import create_app
from tests.app.web.test_status_page_browser import (
    CHROMIUM_ARGS,
    DEADLINE_S,
    chromium_path,
    serving,
)

pytestmark = pytest.mark.chromium


async def test_swagger_ui_renders_the_api_with_no_outside_request(tmp_path: Path) -> None:
    executable = chromium_path()
    from playwright.async_api import Route, async_playwright

    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", tokens="")
    app = create_app(settings)
    async with serving(app) as base_url, async_playwright() as playwright:
        ours = urlsplit(base_url).netloc
        outside: list[str] = []

        async def only_gonogo(route: Route) -> None:
            url = route.request.url
            if urlsplit(url).netloc == ours or url.startswith("data:"):
                await route.continue_()
            else:
                outside.append(url)
                await route.abort()

        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.route("**/*", only_gonogo)
            await page.goto(base_url + "/docs")
            await page.wait_for_selector(".swagger-ui .opblock", timeout=DEADLINE_S * 1000)
            title = await page.text_content(".swagger-ui .info .title") or ""
            assert "gonogo" in title
            paths = await page.eval_on_selector_all(
                ".opblock-summary-path", "nodes => nodes.map(n => n.textContent)"
            )
            assert any("/api/v1/checks" in (p or "") for p in paths), paths
            assert outside == []
            assert errors == []
        finally:
            await browser.close()
