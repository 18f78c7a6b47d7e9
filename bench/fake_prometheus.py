"""A local stand-in for Prometheus's instant-query API, for benchmarks.

``GET|POST /api/v1/query`` answers a one-series vector in the real wire format. The value
depends on the query text, so bench gates can pass: a query mentioning ``availability``
gets 0.9995, ``error`` 0.002, ``latency`` 0.35, anything else 1. ``GET
/api/v1/query_range`` answers a one-series matrix with that value at every step (at most
11,000 points, as Prometheus). ``GET /requests`` tells how many queries it has answered.

Run as a process: ``python bench/fake_prometheus.py`` prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

VALUES = (("availability", "0.9995"), ("error", "0.002"), ("latency", "0.35"))


def value_for(query: str) -> str:
    return next((value for word, value in VALUES if word in query), "1")


async def query(request: web.Request) -> web.Response:
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    text = params.get("query")
    if not text:
        body = {
            "status": "error",
            "errorType": "bad_data",
            "error": 'invalid parameter "query": query is empty',
        }
        return web.json_response(body, status=400)
    sample = [round(time.time(), 3), value_for(text)]
    body = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {"job": "bench"}, "value": sample}]},
    }
    return web.Response(text=json.dumps(body), content_type="application/json")


ANSWERED = {"query": 0, "query_range": 0}


async def query_range(request: web.Request) -> web.Response:
    ANSWERED["query_range"] += 1
    try:
        text = request.query["query"]
        start, end = float(request.query["start"]), float(request.query["end"])
        step = float(request.query["step"])
    except (KeyError, ValueError):
        body = {"status": "error", "errorType": "bad_data", "error": "bad query_range parameters"}
        return web.json_response(body, status=400)
    count = int((end - start) / step) + 1 if step > 0 and end >= start else 0
    if not 0 < count <= 11_000:
        error = "exceeded maximum resolution of 11,000 points per timeseries"
        body = {"status": "error", "errorType": "bad_data", "error": error}
        return web.json_response(body, status=400)
    value = value_for(text)
    values = [[round(start + step * i, 3), value] for i in range(count)]
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"job": "bench"}, "values": values}],
        },
    }
    return web.Response(text=json.dumps(body), content_type="application/json")


async def answered(request: web.Request) -> web.Response:
    return web.json_response(ANSWERED)


async def counted_query(request: web.Request) -> web.Response:
    ANSWERED["query"] += 1
    return await query(request)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("GET", "/api/v1/query", counted_query)
    app.router.add_route("POST", "/api/v1/query", counted_query)
    app.router.add_route("GET", "/api/v1/query_range", query_range)
    app.router.add_route("GET", "/requests", answered)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {bound}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))
