"""Shared pieces of the benchmarks: child processes, bench gate files, process readings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent


def start_fake_prometheus() -> tuple[subprocess.Popen[str], str]:
    """A fake Prometheus in its own process (so its CPU is not counted), and its URL."""
    process = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "fake_prometheus.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise SystemExit(f"fake Prometheus did not start: {line!r}")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


GATE_TEMPLATE = """\
description: bench gate {index}
interval: {interval}
steady_for: 3
probes:
  prom: {{type: prometheus, url: "{prometheus}"}}
criteria:
  - name: availability
    probe: prom
    query: 'avg_over_time(availability{{gate="{name}"}}[5m])'
    go: "> 99.9%"
    rollback: "< 95%"
  - name: error-rate
    probe: prom
    query: 'sum(rate(http_error_total{{gate="{name}"}}[5m]))'
    go: "< 1%"
    rollback: "> 5%"
  - name: latency-p95
    probe: prom
    query: 'histogram_quantile(0.95, sum by (le) (rate(latency_bucket{{gate="{name}"}}[5m])))'
    go: "< 2s"
"""


def write_gates(directory: Path, count: int, *, interval: str, prometheus: str) -> list[str]:
    names = []
    for index in range(count):
        name = f"bench-{index:04d}"
        text = GATE_TEMPLATE.format(
            index=index, interval=interval, prometheus=prometheus, name=name
        )
        (directory / f"{name}.yaml").write_text(text)
        names.append(name)
    return names


def rss_mb(pid: int | None = None) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(parts[11]) + int(parts[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_ok(url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout:.0f}s ({last})")


def start_gonogo_serve(gates_dir: Path, work: Path) -> tuple[subprocess.Popen[str], str]:
    """``gonogo serve`` on a fresh SQLite file in ``work``, open on loopback, and its URL.

    Its log goes to ``work/gonogo.log``; print it with ``tail_log`` when something fails.
    """
    port = free_port()
    env = {**os.environ, "GONOGO_LOG_FORMAT": "json"}
    env.pop("GONOGO_TOKENS", None)
    command = [
        str(Path(sys.executable).with_name("gonogo")),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--gates-dir",
        str(gates_dir),
        "--database-url",
        f"sqlite+aiosqlite:///{work / 'gonogo.db'}",
    ]
    with (work / "gonogo.log").open("w") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env
        )
    return process, f"http://127.0.0.1:{port}"


def tail_log(work: Path, chars: int = 3000) -> str:
    return (work / "gonogo.log").read_text()[-chars:]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
