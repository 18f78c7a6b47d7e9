"""A baseline criterion and a dry-run criterion on the status page in a real headless
Chromium: the baseline value, the "dry run" mark and the dry-run reasons are drawn by the
server and redrawn by the page script alike."""

from __future__ import annotations

import pytest

from gates.engine import (
    BaselineResult,
    CriterionOutcome,
    CriterionResult,
    Decision,
    Steady,
    Verdict,
)
from gates.model import Gate
from probes.base import ProbeConfig
from tests.app.web.status_fakes import T0, FakeCatalog, FakeLoaded, FakeScheduler, status_app
from tests.app.web.test_status_page_browser import (
    CHROMIUM_ARGS,
    DEADLINE_S,
    chromium_path,
    serving,
)

pytestmark = pytest.mark.chromium

GATE = Gate.model_validate(
    {
        "name": "canary",
        "interval": "2s",
        "steady_for": 1,
        "vars": {"version": ".+", "baseline": "stable"},
        "probes": {"prom": ProbeConfig(type="prometheus")},
        "criteria": [
            {
                "name": "errors-vs-stable",
                "probe": "prom",
                "query": 'e{version="${version}"}',
                "baseline": {"vars": {"version": "${baseline}"}},
                "go": ["<= +10%", "< 2%"],
            },
            {
                "name": "latency-trial",
                "probe": "prom",
                "query": "l",
                "go": "< 100ms",
                "dry_run": True,
            },
        ],
    }
)
TRIAL_REASON = "250 ms >= 100 ms (go: < 100ms)"


def canary_verdict(errors: float, baseline: float) -> Verdict:
    return Verdict(
        "canary",
        Decision.GO,
        T0,
        (),
        Steady(1, 1),
        (
            CriterionResult(
                "errors-vs-stable",
                CriterionOutcome.PASS,
                f"{errors} <= ... (baseline {baseline} +10%; go: <= +10% and < 2%)",
                "prom",
                "<= +10% and < 2%",
                value=errors,
                baseline=BaselineResult(baseline, {"version": "stable"}),
            ),
            CriterionResult(
                "latency-trial",
                CriterionOutcome.FAIL,
                TRIAL_REASON,
                "prom",
                "< 100ms",
                value=0.25,
                dry_run=True,
            ),
        ),
        (f"latency-trial: {TRIAL_REASON} (dry run)",),
    )


async def test_baseline_and_dry_run_are_drawn_and_redrawn_live() -> None:
    executable = chromium_path()
    from playwright.async_api import async_playwright

    scheduler = FakeScheduler({"canary": canary_verdict(0.0105, 0.01)})
    app = status_app(FakeCatalog([FakeLoaded(GATE)]), scheduler)
    async with serving(app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(base_url + "/")

            async def shown() -> tuple[str, str, str]:
                card = '[data-gate="canary"]'
                baseline = await page.text_content(f"{card} .baseline") or ""
                trial = await page.text_content(f"{card} tr.dry-run th") or ""
                reasons = await page.text_content(f"{card} .dry-run-reasons") or ""
                return baseline, " ".join(trial.split()), reasons.strip()

            drawn = await shown()
            assert drawn == (
                "baseline 1 % (version=stable)",
                "latency-trial dry run",
                f"latency-trial: {TRIAL_REASON} (dry run)",
            )
            # The script redraws from /status.json: the same content, then the new values.
            await page.evaluate("window.__notReloaded = true")
            scheduler.verdicts["canary"] = canary_verdict(0.0106, 0.0123)
            await page.wait_for_function(
                "() => (document.querySelector('[data-gate=\"canary\"] .baseline') || {})"
                ".textContent === 'baseline 1.23 % (version=stable)'",
                timeout=DEADLINE_S * 1000,
            )
            redrawn = await shown()
            assert redrawn[1:] == drawn[1:]
            assert await page.evaluate("window.__notReloaded") is True
            assert errors == []
        finally:
            await browser.close()
