"""``gonogo demo``: gonogo judging a simulated service whose health drifts through a story.

The simulated "checkout" service runs in the same process on its own loopback port. It
has a Spring-style health endpoint and a Prometheus-HTTP-API-compatible
``/api/v1/query`` that answers the demo gate's PromQL with the story's current values in
the real Prometheus JSON format, so the demo gate goes through the same gate loader,
probes, scheduler and API as a real one.

The story (at speed 1, one loop a little over a minute): healthy (``go`` after a few
samples), then the error rate climbs past 1 % (``no_go``), then availability falls below
95 % (``rollback``), then the service recovers and the story starts again.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
import tempfile
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gates.conditions import format_duration
from gates.model import MIN_INTERVAL

GATE_NAME = "checkout"
# The story is written for this sampling interval; ``--speed`` shrinks both together.
NOMINAL_INTERVAL = timedelta(seconds=2)
STEADY_FOR = 3
ROLLBACK_AFTER = 2

Signal = Literal["availability", "error_rate", "latency_p95", "requests"]
Phase = Literal["healthy", "errors rising", "outage", "recovering"]


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What the simulated service looks like at one moment of the story."""

    availability: float  # fraction of successful health probes over the last minute
    error_rate: float  # fraction of requests answered 5xx
    latency_p95: float  # seconds
    requests: float  # requests in the query window (the error-rate criterion's volume)
    phase: Phase

    @property
    def healthy(self) -> bool:
        """The health endpoint answers UP unless the service is in its outage."""
        return self.availability >= 0.95

    def signal(self, name: Signal) -> float:
        value: float = getattr(self, name)
        return value


@dataclass(frozen=True, slots=True)
class Keyframe:
    at: float  # story seconds
    availability: float
    error_rate: float
    latency_p95: float
    phase: Phase


# Values between keyframes are interpolated linearly, so the numbers drift rather than jump.
STORY: tuple[Keyframe, ...] = (
    Keyframe(0, 0.9997, 0.002, 0.32, "healthy"),
    Keyframe(16, 0.9997, 0.003, 0.35, "errors rising"),
    Keyframe(22, 0.9996, 0.019, 0.62, "errors rising"),
    Keyframe(30, 0.9990, 0.032, 0.95, "outage"),
    Keyframe(36, 0.930, 0.042, 2.40, "outage"),
    Keyframe(48, 0.910, 0.046, 2.80, "recovering"),
    Keyframe(54, 0.9997, 0.002, 0.33, "healthy"),
)
STORY_LENGTH = 64.0
REQUESTS_PER_WINDOW = 6000.0


def state_at(story_seconds: float) -> ServiceState:
    """The service at ``story_seconds`` into the (looping) story; a pure function."""
    t = story_seconds % STORY_LENGTH
    before = STORY[0]
    after = STORY[0]
    for frame in STORY:
        if frame.at <= t:
            before = frame
        else:
            after = frame
            break
    else:
        after = before  # after the last keyframe the values hold until the loop restarts
    span = after.at - before.at
    share = (t - before.at) / span if span > 0 else 0.0

    def blend(a: float, b: float) -> float:
        return a + (b - a) * share

    # A small wobble so the numbers look alive; far too small to cross any threshold.
    wobble = math.sin(story_seconds * 1.7) * 0.5 + math.sin(story_seconds * 0.37) * 0.5
    return ServiceState(
        availability=min(1.0, blend(before.availability, after.availability) + wobble * 5e-5),
        error_rate=max(0.0, blend(before.error_rate, after.error_rate) * (1 + wobble * 0.05)),
        latency_p95=max(0.0, blend(before.latency_p95, after.latency_p95) * (1 + wobble * 0.04)),
        requests=REQUESTS_PER_WINDOW * (1 + wobble * 0.1),
        phase=before.phase,
    )


# --- the queries the demo gate asks, and how the simulated Prometheus recognises them ---

_LABELS = 'job="checkout",version=~"${version}"'
QUERIES: dict[Signal, str] = {
    "availability": f"avg_over_time(probe_success{{{_LABELS}}}[1m])",
    "error_rate": (
        f'sum(rate(http_requests_total{{{_LABELS},code=~"5.."}}[1m]))'
        f" / sum(rate(http_requests_total{{{_LABELS}}}[1m]))"
    ),
    "requests": f"sum(increase(http_requests_total{{{_LABELS}}}[1m]))",
    "latency_p95": (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(http_request_duration_seconds_bucket{{{_LABELS}}}[1m])))"
    ),
}

# Checked in order: the first pattern found in a query names the signal it asks for.
_SIGNAL_PATTERNS: tuple[tuple[re.Pattern[str], Signal], ...] = (
    (re.compile(r"\bprobe_success\b"), "availability"),
    (re.compile(r"\bhttp_request_duration_seconds_bucket\b"), "latency_p95"),
    (re.compile(r"\bincrease\(\s*http_requests_total\b"), "requests"),
    (re.compile(r'\bcode\s*=~\s*"5\.\."'), "error_rate"),
)


def classify_query(query: str) -> Signal | None:
    """Which simulated signal a PromQL query asks for; ``None`` for a series the demo
    does not have (answered, like Prometheus, with an empty vector)."""
    for pattern, signal in _SIGNAL_PATTERNS:
        if pattern.search(query):
            return signal
    return None


def _prometheus_number(value: float) -> str:
    """Sample values as Prometheus writes them: strings, integers without a fraction."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _prometheus_error(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"status": "error", "errorType": error_type, "error": message}, status_code=status
    )


def simulated_service(story_time: Callable[[], float]) -> Starlette:
    """The simulated checkout service; ``story_time()`` gives the current story second."""

    async def health(request: Request) -> Response:
        state = state_at(story_time())
        if state.healthy:
            return JSONResponse({"status": "UP"})
        return JSONResponse({"status": "DOWN"}, status_code=503)

    async def query(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            params.update({key: values[-1] for key, values in form.items() if values})
        expression = params.get("query", "").strip()
        if not expression:
            return _prometheus_error(
                400,
                "bad_data",
                'invalid parameter "query": unknown position: parse error: '
                "no expression found in input",
            )
        signal = classify_query(expression)
        result: list[dict[str, Any]] = []
        if signal is not None:
            value = state_at(story_time()).signal(signal)
            result.append(
                {"metric": {}, "value": [round(time.time(), 3), _prometheus_number(value)]}
            )
        return JSONResponse(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    async def index(request: Request) -> Response:
        state = state_at(story_time())
        return PlainTextResponse(
            f"simulated checkout service: {state.phase}\n"
            f"availability {state.availability:.4f}, error rate {state.error_rate:.4f},"
            f" p95 latency {state.latency_p95:.2f}s\n"
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            Route("/api/v1/query", query, methods=["GET", "POST"]),
        ]
    )


# --- timing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast the demo runs. Gate intervals cannot go below 1 s, so beyond twice the
    nominal speed the story is sped up only as far as the sampling can follow it."""

    requested_speed: float
    interval: timedelta
    time_scale: float  # story seconds per real second

    @property
    def clamped(self) -> bool:
        return self.time_scale < self.requested_speed


def pace(speed: float) -> Pace:
    if not math.isfinite(speed) or speed <= 0:
        raise ValueError(f"--speed must be a positive number, got {speed}")
    wanted = NOMINAL_INTERVAL / speed
    interval = max(MIN_INTERVAL, timedelta(milliseconds=round(wanted.total_seconds() * 1000)))
    return Pace(requested_speed=speed, interval=interval, time_scale=NOMINAL_INTERVAL / interval)


class StoryClock:
    """Story seconds since the demo started, ``time_scale`` story seconds per real one."""

    def __init__(
        self, time_scale: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._scale = time_scale
        self._monotonic = monotonic
        self._started = monotonic()

    def __call__(self) -> float:
        return (self._monotonic() - self._started) * self._scale


# --- the demo gate ----------------------------------------------------------------------


def demo_gate_yaml(service_url: str, interval: timedelta) -> str:
    """The demo gate file, pointing at the simulated service."""
    probe_timeout = max(0.5, min(2.0, interval.total_seconds()))
    lines = [
        "description: Simulated checkout service (gonogo demo), judged against go-live criteria",
        f"interval: {format_duration(interval)}",
        f"steady_for: {STEADY_FOR}",
        f"rollback_after: {ROLLBACK_AFTER}",
        f"timeout: {format_duration(interval * 150)}",
        'vars: {version: ".+"}',
        "probes:",
        f'  prom: {{type: prometheus, url: "{service_url}", timeout: {probe_timeout}, retries: 0}}',
        f'  health: {{type: http, url: "{service_url}/health", expect_status: [200],'
        f" json_path: status, expect_value: UP, timeout: {probe_timeout}, retries: 0}}",
        "criteria:",
        "  - name: availability",
        "    probe: prom",
        f"    query: '{QUERIES['availability']}'",
        '    go: "> 99.9%"',
        '    rollback: "< 95%"',
        "  - name: error-rate",
        "    probe: prom",
        f"    query: '{QUERIES['error_rate']}'",
        f"    min_volume: {{query: '{QUERIES['requests']}', at_least: 100}}",
        '    go: "< 1%"',
        '    rollback: "> 5%"',
        "  - name: latency-p95",
        "    probe: prom",
        f"    query: '{QUERIES['latency_p95']}'",
        '    go: "< 2s"',
        "  - name: health",
        "    probe: health",
        "    metric: up",
        '    go: "== 1"',
    ]
    return "\n".join(lines) + "\n"


# --- running it -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoUrls:
    status_page: str
    api: str
    service: str
    gate: str

    def check_command(self, launcher: str = "gonogo") -> str:
        return f"{launcher} check --server {self.status_page} --gate {self.gate} --version 1.4.2"


def bind_loopback(port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (``port`` 0 picks a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def write_demo_gates(workdir: Path, service_url: str, interval: timedelta) -> Path:
    """Write the demo gate file into ``workdir/gates``; returns that directory."""
    gates_dir = workdir / "gates"
    gates_dir.mkdir(exist_ok=True)
    (gates_dir / f"{GATE_NAME}.yaml").write_text(
        demo_gate_yaml(service_url, interval), encoding="utf-8"
    )
    return gates_dir


ServeApp = Callable[[Path, Path, socket.socket], Coroutine[Any, Any, None]]


async def run_demo(
    *,
    port: int,
    speed: float,
    serve_gonogo: ServeApp,
    announce: Callable[[DemoUrls, Pace], None],
    stop: asyncio.Event | None = None,
) -> None:
    """Run the simulated service and gonogo until ``stop`` is set (or the task is
    cancelled). ``serve_gonogo(gates_dir, data_dir, sock)`` serves gonogo on ``sock``."""
    import uvicorn

    demo_pace = pace(speed)
    gonogo_sock = bind_loopback(port)
    service_sock = bind_loopback(0)
    service_url = f"http://127.0.0.1:{service_sock.getsockname()[1]}"
    gonogo_url = f"http://127.0.0.1:{gonogo_sock.getsockname()[1]}"
    with tempfile.TemporaryDirectory(prefix="gonogo-demo-") as workdir:
        gates_dir = write_demo_gates(Path(workdir), service_url, demo_pace.interval)
        story = StoryClock(demo_pace.time_scale)
        service = uvicorn.Server(
            uvicorn.Config(
                simulated_service(story), log_level="warning", access_log=False, lifespan="off"
            )
        )
        tasks = [
            asyncio.create_task(service.serve(sockets=[service_sock]), name="demo-service"),
            asyncio.create_task(
                serve_gonogo(gates_dir, Path(workdir), gonogo_sock), name="demo-gonogo"
            ),
        ]
        announce(
            DemoUrls(
                status_page=gonogo_url,
                api=f"{gonogo_url}/api/v1",
                service=service_url,
                gate=GATE_NAME,
            ),
            demo_pace,
        )
        waiters: list[asyncio.Future[Any]] = list(tasks)
        stopper = asyncio.create_task(stop.wait()) if stop is not None else None
        if stopper is not None:
            waiters.append(stopper)
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            service.should_exit = True
            for task in (*tasks, *([stopper] if stopper else [])):
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task
            gonogo_sock.close()
            service_sock.close()
