"""How fast the prometheus probe can ask, against raw aiohttp in the same run.

A fake Prometheus runs in its own process (bench/fake_prometheus.py). At 1, 8, 32 and
128 requests in flight, for a fixed time each, this measures:
  raw     aiohttp ClientSession GET + JSON parse (the baseline),
  probe   PrometheusProbe.measure() (httpx on the aiohttp transport, tenacity, checks),
  httpx   plain httpx.AsyncClient (default transport), for context,
  hx+aio  httpx.AsyncClient on httpx_aiohttp's AiohttpTransport (what probes.client
          would be if it kept the httpx API), to show what that layer costs.
raw, httpx and hx+aio use one pool of 32 connections; the probe uses its own client,
which has no pool-wide cap (a shared cap lets gates stuck on a source starve the others;
the sampler bounds each sample's requests instead). Then memory: a process holding 1,000
gates, each with its own prometheus probe instance, and 1,000 gates sharing one probe
instance (as the gate catalog does) with every gate measuring at the same instant, the
worst case for connections the shared client opens.

Run: uv run python bench/probe_fanout.py [--seconds 2] [--footprint-only]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import start_fake_prometheus
from gates.model import Gate
from probes.base import MeasurementStatus, ProbeContext, ProbeQuery
from probes.prometheus import PrometheusConfig, PrometheusProbe

QUERY = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
LEVELS = (1, 8, 32, 128)
POOL = 32


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run_level(
    call: Callable[[], Awaitable[None]], in_flight: int, seconds: float
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    for _ in range(20):  # warm the pool
        await call()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return len(latencies) / (time.perf_counter() - started), latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def fanout(url: str, seconds: float) -> None:
    params = {"query": QUERY, "time": "1767436620"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL))
    plain = httpx.AsyncClient(
        base_url=url, limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    )
    probe = PrometheusProbe(
        PrometheusConfig(type="prometheus", url=url, timeout=5, retries=2), name="prom"
    )
    bridged = httpx.AsyncClient(
        base_url=url,
        transport=AiohttpTransport(
            limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        ),
    )
    query = ProbeQuery(query=QUERY)
    ctx = ProbeContext(now=datetime.now(UTC))

    async def raw() -> None:
        async with session.get(f"{url}/api/v1/query", params=params) as response:
            await response.json()

    async def via_probe() -> None:
        result = await probe.measure(query, ctx)
        assert result.status is MeasurementStatus.OK, result.detail

    async def via_httpx() -> None:
        (await plain.get("/api/v1/query", params=params)).json()

    async def via_bridge() -> None:
        (await bridged.get("/api/v1/query", params=params)).json()

    print(
        f"{'in flight':>9} {'client':>6} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs raw':>7}"
    )
    try:
        for level in LEVELS:
            baseline = 0.0
            for name, call in (
                ("raw", raw),
                ("probe", via_probe),
                ("httpx", via_httpx),
                ("hx+aio", via_bridge),
            ):
                rate, latencies = await run_level(call, level, seconds)
                baseline = baseline or rate
                print(
                    f"{level:>9} {name:>6} {rate:>9.0f} {pct(latencies, 0.5):>8.2f}"
                    f" {pct(latencies, 0.99):>8.2f} {rate / baseline:>6.0%}"
                )
    finally:
        await session.close()
        await plain.aclose()
        await bridged.aclose()
        await probe.aclose()


def footprint(url: str, count: int = 1000) -> None:
    gc.collect()
    before = rss_kib()
    gates = []
    probes = []
    for i in range(count):
        config = PrometheusConfig(type="prometheus", url=url, headers={"X-Gate": str(i)})
        gates.append(
            Gate.model_validate(
                {
                    "name": f"gate-{i}",
                    "probes": {"prom": config},
                    "criteria": [
                        {"name": "error-rate", "probe": "prom", "query": QUERY, "go": "< 1%"},
                        {
                            "name": "latency",
                            "probe": "prom",
                            "query": "histogram_quantile(0.95, x)",
                            "go": "< 2s",
                        },
                    ],
                }
            )
        )
        probes.append(PrometheusProbe(config, name="prom"))
    gc.collect()
    built = rss_kib()
    query = ProbeQuery(query=QUERY)

    async def use_then_close() -> int:
        # Each probe's pool opens on first use: measure with one live connection each.
        ctx = ProbeContext(now=datetime.now(UTC))
        for start in range(0, count, 100):
            await asyncio.gather(*(p.measure(query, ctx) for p in probes[start : start + 100]))
        gc.collect()
        used = rss_kib()
        await asyncio.gather(*(p.aclose() for p in probes))
        return used

    used = asyncio.run(use_then_close())
    print(
        f"\n{count} gates, one prometheus probe each: RSS {before / 1024:.1f} MiB at start,"
        f" {built / 1024:.1f} MiB built (+{(built - before) / count:.1f} KiB per gate),"
        f" {used / 1024:.1f} MiB after one query each"
        f" (+{(used - before) / count:.1f} KiB per gate with its open connection)"
    )


def shared_footprint(url: str, count: int = 1000) -> None:
    """``count`` gates on one shared probe, all measuring at once."""
    gc.collect()
    before = rss_kib()
    config = PrometheusConfig(type="prometheus", url=url)
    probe = PrometheusProbe(config, name="prom")
    query = ProbeQuery(query=QUERY)

    async def burst() -> tuple[int, int, float]:
        ctx = ProbeContext(now=datetime.now(UTC))
        started = time.perf_counter()
        results = await asyncio.gather(*(probe.measure(query, ctx) for _ in range(count)))
        took = time.perf_counter() - started
        assert all(r.status is MeasurementStatus.OK for r in results)
        gc.collect()
        used = rss_kib()
        session = probe.client._session
        connector = session.connector if session is not None else None
        pooled = sum(len(c) for c in getattr(connector, "_conns", {}).values())
        await probe.aclose()
        return used, pooled, took

    used, pooled, took = asyncio.run(burst())
    print(
        f"{count} gates sharing one prometheus probe, all measuring at once: RSS"
        f" {before / 1024:.1f} MiB at start, {used / 1024:.1f} MiB after"
        f" (+{(used - before) / count:.1f} KiB per gate), {pooled} connections kept,"
        f" burst answered in {took * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per level and client")
    parser.add_argument("--footprint-only", action="store_true", help="skip the fan-out")
    args = parser.parse_args()
    process, url = start_fake_prometheus()
    try:
        if not args.footprint_only:
            asyncio.run(fanout(url, args.seconds))
        footprint(url)
        shared_footprint(url)
    finally:
        process.terminate()
        process.wait(5)


if __name__ == "__main__":
    main()
