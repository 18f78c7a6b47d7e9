"""Property-based fuzzing of every operation in the OpenAPI schema (schemathesis): no
input, valid or not, makes the service answer 5xx."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.testclient import TestClient

from app.core.migrate import upgrade_database
from app.core.settings import load_settings
from app.main import create_app
from tests.app.conftest import TOKENS, TOKENS_SETTING
from tests.app.fakes import ProbeBench

EXAMPLES_PER_OPERATION = 25
BUDGET_SECONDS = 60


def test_no_operation_answers_5xx(gates_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}"
    asyncio.run(upgrade_database(url))
    app = create_app(
        load_settings(database_url=url, gates_dir=gates_dir, tokens=TOKENS_SETTING),
        probe_builder=ProbeBench(),
    )
    started = time.monotonic()
    with TestClient(app, raise_server_exceptions=False) as client:
        # Seed a real check so that id-bearing paths also hit an existing one sometimes.
        seeded = client.post(
            "/api/v1/gates/portal/checks",
            json={"version": "1"},
            headers={"Authorization": f"Bearer {TOKENS['pipeline']}"},
        )
        assert seeded.status_code == 201
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures: list[str] = []
        sent = [0]
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 14
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: Any) -> None:
                kwargs = case.as_transport_kwargs(
                    base_url="http://testserver",
                    headers={"Authorization": f"Bearer {TOKENS['admin']}"},
                )
                kwargs.pop("cookies", None)
                if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
                    kwargs["content"] = kwargs.pop("data")
                if isinstance(kwargs.get("params"), dict) and case.operation.path.endswith("}"):
                    kwargs["params"] = {**kwargs["params"], "wait": 0}
                response = client.request(**kwargs)
                sent[0] += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{kwargs['method']} {kwargs['url']} -> {response.status_code}:"
                        f" {response.text[:200]}"
                    )

            exercise()
        print(
            f"\nschemathesis: {sent[0]} requests over {len(operations)} operations,"
            f" {len(failures)} answered 5xx"
        )
        assert failures == []
    assert time.monotonic() - started < BUDGET_SECONDS
