"""A fake for "any JSON API" (the ``json`` probe) and for client tests.

It serves ``documents[path]`` (or ``document`` for any other path) as JSON with 200.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes import Reply, ScriptedFake


class JsonApiFake(ScriptedFake):
    def __init__(self, document: Any = None) -> None:
        super().__init__()
        self.document: Any = document if document is not None else {}
        self.documents: dict[str, Any] = {}

    def add_routes(self, app: web.Application) -> None:
        async def any_path(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, self._answer)

        app.router.add_route("*", "/{tail:.*}", any_path)

    def unauthorized(self) -> Reply:
        return Reply(status=401, json={"error": "unauthorized"})

    def _answer(self, request: web.Request) -> Reply:
        return Reply(json=self.documents.get(request.path, self.document))
