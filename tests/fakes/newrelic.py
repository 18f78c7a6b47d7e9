"""A local New Relic NerdGraph ``POST /graphql`` that answers NRQL queries.

Speaks the documented wire format: 200 with
``data.actor.account.nrql.results``; GraphQL ``errors`` with HTTP 200 for bad NRQL and
NRQL limits (``TOO_MANY_REQUESTS``); 401 with the ``BAD_API_KEY`` body for a missing or
wrong ``API-Key`` header (the header name is case-insensitive, as on the real service);
429 with no documented body for the concurrency limit.

It is not a GraphQL server: it accepts the one document shape the probe sends (NRQL in
the ``$nrql: Nrql!`` variable, account in ``$accountId: Int!``) and answers anything else
with a GraphQL validation error, so a probe that splices NRQL into the document fails.
Tests set rows per NRQL with ``set_rows`` (unknown NRQL gets ``results: []``).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tests.fakes import Reply, ScriptedFake, example

API_KEY = "NRAK-FAKE0123456789ABCDEFGHIJKL"
ACCOUNT_ID = 1234567
_DOCUMENT = re.compile(
    r"query\s*\(\s*\$accountId\s*:\s*Int!\s*,\s*\$nrql\s*:\s*Nrql!\s*\)\s*"
    r"\{\s*actor\s*\{\s*account\s*\(\s*id\s*:\s*\$accountId\s*\)\s*"
    r"\{\s*nrql\s*\(\s*query\s*:\s*\$nrql\s*\)\s*\{\s*results\s*\}\s*\}\s*\}\s*\}\s*$"
)
_NRQL_START = re.compile(r"^\s*(SELECT|FROM|SHOW)\b", re.IGNORECASE)


def _graphql_error(message: str, error_class: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"errorClass": error_class}}]}


class NewRelicFake(ScriptedFake):
    def __init__(self, *, api_key: str = API_KEY, account_id: int = ACCOUNT_ID) -> None:
        super().__init__()
        self.api_key = api_key
        self.account_id = account_id
        self.rows: dict[str, list[Any]] = {}

    # -- what tests call ---------------------------------------------------------

    def set_rows(self, nrql: str, rows: Sequence[Any]) -> None:
        self.rows[nrql] = list(rows)

    def bad_api_key(self) -> Reply:
        return Reply(status=401, json=example("newrelic_error_bad_api_key.json"))

    def too_many_requests(self) -> Reply:
        return Reply(json=example("newrelic_error_too_many_requests.json"))

    def concurrency_limited(self) -> Reply:
        return Reply(status=429, body=b"")

    def sent_variables(self, index: int = -1) -> dict[str, Any]:
        variables: dict[str, Any] = json.loads(self.requests[index].body)["variables"]
        return variables

    # -- serving -------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        async def graphql(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, self._answer)

        app.router.add_post("/graphql", graphql)

    def _answer(self, request: web.Request) -> Reply:
        if request.headers.get("API-Key") != self.api_key:
            return self.bad_api_key()
        seen = self.requests[-1]
        try:
            document = json.loads(seen.body)
        except ValueError:
            return Reply(status=400, json=_graphql_error("Invalid JSON body", "BAD_REQUEST"))
        query = document.get("query") if isinstance(document, dict) else None
        variables = document.get("variables") if isinstance(document, dict) else None
        if not isinstance(query, str) or not _DOCUMENT.match(query.strip()):
            return Reply(json=_graphql_error("Unexpected GraphQL document", "INVALID_INPUT"))
        if not isinstance(variables, dict) or not isinstance(variables.get("nrql"), str):
            return Reply(json=_graphql_error("Variable $nrql is required", "INVALID_INPUT"))
        account = variables.get("accountId")
        if not isinstance(account, int) or isinstance(account, bool):
            return Reply(json=_graphql_error("Variable $accountId must be Int", "INVALID_INPUT"))
        if account != self.account_id:
            return Reply(json=_graphql_error("Access to account denied", "FORBIDDEN"))
        nrql = variables["nrql"]
        if not _NRQL_START.match(nrql):
            return Reply(json=example("newrelic_error.json"))
        body = copy.deepcopy(example("newrelic_nrql_empty.json"))
        body["data"]["actor"]["account"]["nrql"]["results"] = copy.deepcopy(self.rows.get(nrql, []))
        return Reply(json=body)
