"""Event-loop liveness: while ``gonogo serve`` parses the largest gate definition its
limits allow, ``/healthz`` keeps answering within 100 ms (parsing runs off the loop)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from gates.yaml_source import MAX_DEFINITION_CHARS
from tests.app.cli.test_processes import Server, gate, running
from tests.app.conftest import TOKENS

HEALTHZ_BOUND_SECONDS = 0.1
PROBES = 1000


def worst_definition() -> str:
    """About as much work as the limits allow: a thousand probes and criteria (close to
    the value limit), each validated, and one unknown key at the end, so the definition
    is read and checked in full and then refused without building a thousand probes."""
    lines = ["probes:"]
    lines += [
        f'  p{i}: {{type: http, url: "http://127.0.0.1:9/{i}", timeout: 1, retries: 0}}'
        for i in range(PROBES)
    ]
    lines.append("criteria:")
    lines += [f'  - {{name: c{i}, probe: p{i}, metric: up, go: "== 1"}}' for i in range(PROBES)]
    lines.append("zzz_unknown: 1")
    text = "\n".join(lines) + "\n"
    assert len(text) <= MAX_DEFINITION_CHARS
    return text


def test_healthz_answers_within_100ms_while_the_worst_allowed_gate_is_parsed(
    tmp_path: Path,
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "small.yaml").write_text(gate(1))
    body = worst_definition()
    with running(Server(gates, tmp_path / "gonogo.db")) as server:
        put_window: dict[str, float] = {}
        answer: dict[str, httpx.Response] = {}
        # Both clients are built before the measuring starts: building one loads TLS
        # certificates, which would stall this process, not the server.
        uploader = httpx.Client(timeout=60)
        content = body.encode()

        def put() -> None:
            put_window["start"] = time.monotonic()
            answer["put"] = uploader.put(
                f"{server.url}/api/v1/gates/worst",
                content=content,
                headers={"Authorization": f"Bearer {TOKENS['admin']}"},
            )
            put_window["end"] = time.monotonic()

        latencies: list[tuple[float, float]] = []
        with uploader, httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(5):  # warm both connections and the route
                assert client.get("/healthz").status_code == 200
                assert uploader.get(f"{server.url}/healthz").status_code == 200
            # Once unmeasured: the first use of a probe type imports its module (and the
            # entry-point registry), a one-time cost that is not parsing.
            put()
            worker = threading.Thread(target=put)
            worker.start()
            while worker.is_alive():
                sent = time.monotonic()
                assert client.get("/healthz").status_code == 200
                latencies.append((sent, time.monotonic()))
            worker.join()

    put_response = answer["put"]
    assert put_response.status_code == 422, put_response.text
    [problem] = put_response.json()["errors"]
    assert problem["msg"].startswith(f"line {2 * PROBES + 3}, column 1: unknown key 'zzz_unknown'")
    during = [
        done - sent
        for sent, done in latencies
        if sent >= put_window["start"] and done <= put_window["end"]
    ]
    slowest = max(latencies, key=lambda span: span[1] - span[0])
    print(f"\nslowest at {slowest[0] - put_window['start']:.3f}s into the PUT")
    print(
        f"\nPUT of {len(body)} characters took {put_window['end'] - put_window['start']:.3f}s;"
        f" {len(during)} /healthz during it, slowest {max(during, default=0) * 1000:.1f} ms"
    )
    assert len(during) >= 3, "the parse was too quick to overlap any /healthz request"
    assert max(during) < HEALTHZ_BOUND_SECONDS
