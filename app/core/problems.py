"""RFC 9457 ``application/problem+json`` for every error the API returns.

Each error class is mapped once here. Unexpected faults become a 500 problem that says
nothing about the internals (the log has the details, with secrets redacted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
MAX_BODY_BYTES = 1024 * 1024

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """An error the API answers with; raise it from services, routes and dependencies."""

    status = 500
    title = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = headers
        self.extra = extra


class BadRequest(Problem):
    status, title = 400, "Bad request"


class Unauthorized(Problem):
    status, title = 401, "Unauthorized"


class Forbidden(Problem):
    status, title = 403, "Forbidden"


class NotFound(Problem):
    status, title = 404, "Not found"


class Conflict(Problem):
    status, title = 409, "Conflict"


class TooLarge(Problem):
    status, title = 413, "Content too large"


class Invalid(Problem):
    status, title = 422, "Unprocessable content"


class Unavailable(Problem):
    status, title = 503, "Service unavailable"


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = list(errors)
    body.update(extra)
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def _loc(parts: Sequence[Any]) -> list[str | int]:
    return [p if isinstance(p, int) else str(p) for p in parts]


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as ``[{loc, msg}]``, never echoing the rejected input."""
    found = []
    for error in errors:
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        found.append({"loc": _loc(error.get("loc", ())), "msg": message})
    return found


async def _on_problem(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Problem)
    return problem_response(
        error.status,
        error.detail,
        title=error.title,
        errors=error.errors,
        headers=error.headers,
        **error.extra,
    )


async def _on_validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = validation_errors(error.errors())
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    return problem_response(422, f"the request is invalid: {fields}", errors=errors)


async def _on_http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail if isinstance(error.detail, str) else _TITLES.get(error.status_code, "")
    if error.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.url.path}"
    elif error.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(error.status_code, detail, headers=error.headers)


async def _on_disconnect(request: Request, error: Exception) -> JSONResponse:
    """The caller hung up before its whole body arrived: its fault, not a server fault.
    Logged as one line without a traceback; the answer has no one left to read it."""
    log.info(
        "client disconnected before its body was read", method=request.method, path=request.url.path
    )
    return problem_response(400, "the client disconnected before sending its whole body")


# What a database that is down, unreachable, hung or out of connections raises; a request
# that meets one is answered 503 (try again), never 500 (a gonogo fault).
DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    SQLAlchemyTimeoutError,
    ConnectionError,
    TimeoutError,
)


async def _on_database_outage(request: Request, error: Exception) -> JSONResponse:
    log.warning(
        "database not answering",
        method=request.method,
        path=request.url.path,
        error_type=type(error).__name__,
        error=str(error)[:500],  # "database is locked" is not "no such column": say which
    )
    return problem_response(
        503, "the database is not answering; try again later", headers={"Retry-After": "5"}
    )


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error(
        "unhandled error",
        method=request.method,
        path=request.url.path,
        error_type=type(error).__name__,
        exc_info=error,
    )
    return problem_response(500, "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(ClientDisconnect, _on_disconnect)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for outage in DATABASE_OUTAGES:
        app.add_exception_handler(outage, _on_database_outage)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)


class BodySizeLimit:
    """413 for request bodies over ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reject(scope, receive, send, 400, "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
                await self.app(scope, receive, send)
                return
        # No declared length (chunked): read the body up to the limit, then replay it.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._reject(
            scope, receive, send, 413, f"the request body is larger than {self.max_bytes} bytes"
        )

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, status: int, detail: str
    ) -> None:
        await problem_response(status, detail)(scope, receive, send)
