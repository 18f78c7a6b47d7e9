"""A fake health endpoint: Spring Boot Actuator and IETF health+json.

``GET /actuator/health`` and ``GET /health`` answer from ``mode``:
- ``spring-up`` / ``spring-down``: ``{"status":"UP"}`` 200 / ``{"status":"DOWN"}`` 503, as
  ``application/vnd.spring-boot.actuator.v3+json`` (``detailed=True`` sends the captured
  example bodies with components);
- ``ietf-pass`` / ``ietf-warn`` / ``ietf-fail``: the captured health+json examples, as
  ``application/health+json`` with 200 / 200 / 503.
"""

from __future__ import annotations

from aiohttp import web

from tests.fakes import Reply, ScriptedFake, example

SPRING = "application/vnd.spring-boot.actuator.v3+json"
HEALTH_JSON = "application/health+json"


class HealthFake(ScriptedFake):
    def __init__(self, mode: str = "spring-up", *, detailed: bool = False) -> None:
        super().__init__()
        self.mode = mode
        self.detailed = detailed

    def add_routes(self, app: web.Application) -> None:
        async def health(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, lambda _: self.answer())

        app.router.add_get("/actuator/health", health)
        app.router.add_get("/health", health)

    def answer(self) -> Reply:
        suffix = "" if self.detailed else "_minimal"
        if self.mode == "spring-up":
            return Reply(json=example(f"spring_health_up{suffix}.json"), content_type=SPRING)
        if self.mode == "spring-down":
            body = example(f"spring_health_down{suffix}.json")
            return Reply(status=503, json=body, content_type=SPRING)
        if self.mode in ("ietf-pass", "ietf-warn", "ietf-fail"):
            kind = self.mode.removeprefix("ietf-")
            return Reply(
                status=503 if kind == "fail" else 200,
                json=example(f"health_json_{kind}.json"),
                content_type=HEALTH_JSON,
                headers={"Cache-Control": "max-age=3600"},
            )
        raise ValueError(f"unknown health mode {self.mode!r}")
