"""compare: and slo: gates through the API: a definition that cannot work is a located
422, a valid one is stored, and a check cannot set the ${window} gonogo fills."""

from __future__ import annotations

from tests.app.conftest import Service
from tests.app.test_api import assert_problem

SLO_GATE = """\
probes:
  prom: {type: prometheus, url: "http://127.0.0.1:9"}
criteria:
  - name: checkout-slo
    probe: prom
    slo:
      objective: 99.9%
      errors: 'sum(rate(errors{version="${version}"}[${window}]))'
      total: 'sum(rate(requests{version="${version}"}[${window}]))'
"""


async def test_a_bad_slo_or_compare_definition_is_a_located_422(service: Service) -> None:
    admin = service.headers("admin")
    full = SLO_GATE.replace("objective: 99.9%", "objective: 100%")
    response = await service.client.put("/api/v1/gates/slo", content=full, headers=admin)
    errors = assert_problem(response, 422)["errors"]
    assert [e["line"] for e in errors] == [7], errors
    assert "objective must be below 100%" in errors[0]["msg"]
    no_range = (
        "vars: {baseline: stable}\n"
        "probes:\n  s: {type: alertmanager, url: 'http://127.0.0.1:9'}\n"
        "criteria:\n  - name: c\n    probe: s\n    matchers: ['a=\"b\"']\n"
        "    baseline: {vars: {version: stable}}\n"
        "    compare: {window: 10m, step: 30s, effect: 10%}\n"
    )
    response = await service.client.put("/api/v1/gates/cmp", content=no_range, headers=admin)
    errors = assert_problem(response, 422)["errors"]
    assert any("cannot read a series of points" in e["msg"] and e["line"] == 9 for e in errors)


async def test_a_valid_slo_gate_is_stored_and_its_window_is_not_the_checks(
    service: Service,
) -> None:
    admin = service.headers("admin")
    created = await service.client.put("/api/v1/gates/slo", content=SLO_GATE, headers=admin)
    assert created.status_code in (200, 201), created.text
    shown = (await service.get("/api/v1/gates/slo")).json()
    assert "slo" in str(shown)
    check = await service.client.post(
        "/api/v1/gates/slo/checks",
        json={"version": "v2", "vars": {"window": "1y"}},
        headers=service.headers("pipeline"),
    )
    body = assert_problem(check, 422)
    assert "window" in str(body)
