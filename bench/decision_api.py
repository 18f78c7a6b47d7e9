"""Throughput and latency of ``GET /api/v1/gates/{gate}/decision`` against two baselines.

Starts gonogo (``gonogo serve``) with ``--gates`` gates sampling a local fake Prometheus
every second, and, in the same run, two baselines under the same uvicorn that return the
same bytes: a bare FastAPI app, and a raw ASGI app with no framework at all (the floor:
what uvicorn alone costs). Loads each with ``wrk`` (``--connections`` connections for
``--seconds`` seconds, rotating over the gates) and prints req/s, p50, p99 and the ratio
to each baseline.

    uv run python bench/decision_api.py

Targets: gonogo ≥ 80 % of the bare FastAPI app's req/s, p99 < 20 ms; the ratio to the
raw ASGI floor is reported (aim: ≥ 80 %).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _support import (
    free_port,
    start_fake_prometheus,
    start_gonogo_serve,
    stop,
    tail_log,
    wait_until_ok,
    write_gates,
)

RATIO_TARGET = 0.80
P99_TARGET_MS = 20.0

ROTATE_LUA = """
local i = 0
request = function()
  i = (i % {count}) + 1
  return wrk.format(nil, string.format("/api/v1/gates/bench-%04d/decision", i - 1))
end
"""


@dataclass(frozen=True)
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: str


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def run_wrk(url: str, script: Path, *, connections: int, seconds: int, threads: int) -> Load:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    try:
        return _parse_wrk(output)
    except (AttributeError, ValueError) as error:
        raise SystemExit(f"could not read wrk's output ({error}):\n{output}") from None


def _parse_wrk(output: str) -> Load:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"(Non-2xx or 3xx responses: \d+|Socket errors:.*)", output)
    return Load(rate, p50, p99, errors.group(1) if errors else "none")


def serve_raw(port: int, body_file: Path) -> None:
    """The floor: a raw ASGI app under the same uvicorn, answering the same bytes."""
    import uvicorn

    body = body_file.read_bytes()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    message = {"type": "http.response.body", "body": body}

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        await send(start)  # type: ignore[operator]
        await send(message)  # type: ignore[operator]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_bare(port: int, body_file: Path) -> None:
    """The baseline: FastAPI + uvicorn returning precomputed bytes."""
    import uvicorn
    from fastapi import FastAPI, Response

    body = body_file.read_bytes()
    app = FastAPI()

    @app.get("/api/v1/gates/{gate}/decision")
    async def decision(gate: str) -> Response:
        return Response(content=body, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=env
    )


def wait_for_go(base: str, gates: list[str], *, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies = [httpx.get(f"{base}/api/v1/gates/{g}/decision", timeout=5) for g in gates]
        if all(r.status_code == 200 and r.json().get("decision") == "go" for r in bodies):
            return bodies[0].content
        time.sleep(0.5)
    last = bodies[0].text[:300] if bodies else "no answer"
    raise SystemExit(f"gates did not reach go within {timeout:.0f}s; last body: {last}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gates", type=int, default=100)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--interval", default="1s", help="the gates' sampling interval")
    parser.add_argument("--bare-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-body", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.bare_port:
        (serve_raw if options.raw else serve_bare)(options.bare_port, options.bare_body)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    prometheus, prometheus_url = start_fake_prometheus()
    children = [prometheus]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            gates_dir = work / "gates"
            gates_dir.mkdir()
            names = write_gates(
                gates_dir, options.gates, interval=options.interval, prometheus=prometheus_url
            )
            script = work / "rotate.lua"
            script.write_text(ROTATE_LUA.replace("{count}", str(options.gates)))

            process, gonogo = start_gonogo_serve(gates_dir, work)
            children.append(process)
            try:
                wait_until_ok(f"{gonogo}/readyz", timeout=60)
                body = wait_for_go(gonogo, names[:5], timeout=60)
            except SystemExit:
                print(tail_log(work), file=sys.stderr)
                raise

            body_file = work / "body.json"
            body_file.write_bytes(body)
            baselines = {}
            for label, extra in (("raw ASGI", ["--raw"]), ("bare FastAPI", [])):
                port = free_port()
                children.append(
                    start(
                        [
                            sys.executable,
                            __file__,
                            "--bare-port",
                            str(port),
                            "--bare-body",
                            str(body_file),
                            *extra,
                        ],
                        work / f"baseline-{port}.log",
                    )
                )
                baselines[label] = f"http://127.0.0.1:{port}"
                wait_until_ok(f"{baselines[label]}/api/v1/gates/x/decision", timeout=30)

            results = {}
            for label, url in (*baselines.items(), ("gonogo", gonogo)):
                run_wrk(
                    url, script, connections=options.connections, seconds=2, threads=options.threads
                )
                results[label] = run_wrk(
                    url,
                    script,
                    connections=options.connections,
                    seconds=options.seconds,
                    threads=options.threads,
                )
            still_go = wait_for_go(gonogo, names[:1], timeout=10)
    finally:
        for child in reversed(children):
            stop(child)

    baseline = results["bare FastAPI"]
    floor = results["raw ASGI"]
    print(
        f"GET /api/v1/gates/{{gate}}/decision: {options.gates} gates"
        f" sampling every {options.interval},"
        f" body {len(body)} bytes, wrk -t{options.threads} -c{options.connections}"
        f" -d{options.seconds}s"
    )
    print(f"{'':14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8} {'vs raw':>8}  errors")
    for label, load in results.items():
        print(
            f"{label:14} {load.requests_per_s:9.0f} {load.p50_ms:8.2f} {load.p99_ms:8.2f}"
            f" {load.requests_per_s / baseline.requests_per_s:8.0%}"
            f" {load.requests_per_s / floor.requests_per_s:8.0%}  {load.errors}"
        )
    ours = results["gonogo"]
    ratio = ours.requests_per_s / baseline.requests_per_s
    met = ratio >= RATIO_TARGET and ours.p99_ms < P99_TARGET_MS and bool(still_go)
    print(
        f"targets: >= {RATIO_TARGET:.0%} of bare req/s, p99 < {P99_TARGET_MS:.0f} ms:"
        f" {'met' if met else 'MISSED'};"
        f" {ours.requests_per_s / floor.requests_per_s:.0%} of the raw ASGI floor"
        f" (aim: >= {RATIO_TARGET:.0%})"
    )


if __name__ == "__main__":
    main()
