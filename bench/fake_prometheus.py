"""A local stand-in for Prometheus's instant-query API, for benchmarks.

``GET|POST /api/v1/query`` answers a one-series vector in the real wire format. The value
depends on the query text, so bench gates can pass: a query mentioning ``availability``
gets 0.9995, ``error`` 0.002, ``latency`` 0.35, anything else 1.

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


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("GET", "/api/v1/query", query)
    app.router.add_route("POST", "/api/v1/query", query)
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
