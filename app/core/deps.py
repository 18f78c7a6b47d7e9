"""FastAPI dependencies, declared once: the request's session and the caller's role; and
``AuthFirstRoute``, which authenticates a caller before anything reads the request body."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal, TokenAuthenticator, require
from app.core.clock import Clock
from app.core.db import Database
from app.core.settings import role_rank

T = TypeVar("T")

# Row ids are 64-bit signed integers in the database: a larger number names no row, and
# the database driver would fail on it. Every id a request carries is bounded by this.
MAX_ROW_ID = 2**63 - 1


def state_part(request: Request, name: str, kind: type[T]) -> T:
    """``app.state.<name>``, checked to be a ``kind``: the one typed read of app state."""
    value = getattr(request.app.state, name, None)
    if not isinstance(value, kind):
        raise RuntimeError(f"app.state.{name} is not a {kind.__name__} (not started?)")
    return value


def from_state(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency that reads ``app.state.<name>`` and checks that it is a ``kind``.

    Each domain declares its own (``CatalogDep``, ``RunnerDep``, ...), so routes get typed
    parts and never read ``app.state`` themselves. Async, so it costs no thread-pool hop.
    """

    async def get(request: Request) -> T:
        return state_part(request, name, kind)

    get.__name__ = f"state_{name}"
    return get


DatabaseDep = Annotated[Database, Depends(from_state("db", Database))]
ClockDep = Annotated[Clock, Depends(from_state("clock", Clock))]
AuthenticatorDep = Annotated[
    TokenAuthenticator, Depends(from_state("authenticator", TokenAuthenticator))
]


async def _session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """One unit of work per request (``Database.session``): committed when the route
    returns without error, rolled back otherwise."""
    async with db.session() as session:
        yield session


# scope="function": commit before the response is sent, so a client that reads right
# after a write sees it, and a failed commit is the request's error.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


async def _current_token(
    authenticator: AuthenticatorDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return authenticator.authenticate(authorization)


CurrentToken = Annotated[Principal, Depends(_current_token)]

_ACTIONS = {
    "viewer": "reading",
    "pipeline": "this pipeline action",
    "approver": "this approval",
    "admin": "this administration",
}


def _role_checker(role: str) -> Callable[..., Any]:
    async def check(principal: CurrentToken) -> Principal:
        require(principal, role, action=_ACTIONS[role])
        return principal

    check.__name__ = f"require_{role}"
    check.required_role = role  # type: ignore[attr-defined]  # read by AuthFirstRoute
    return check


def RequireRole(role: str) -> Any:
    """``Annotated[Principal, ...]`` for a route that needs at least ``role``."""
    return Annotated[Principal, Depends(_role_checker(role))]


Viewer = Annotated[Principal, Depends(_role_checker("viewer"))]
Pipeline = Annotated[Principal, Depends(_role_checker("pipeline"))]
Approver = Annotated[Principal, Depends(_role_checker("approver"))]
Admin = Annotated[Principal, Depends(_role_checker("admin"))]


def required_role(dependant: Dependant) -> str | None:
    """The highest role a route's dependencies require (``RequireRole`` and the aliases)."""
    found: str | None = None
    for sub in dependant.dependencies:
        for role in (getattr(sub.call, "required_role", None), required_role(sub)):
            if isinstance(role, str) and (found is None or role_rank(role) > role_rank(found)):
                found = role
    return found


class AuthFirstRoute(APIRoute):
    """A route that checks the caller's token and role before the body is read.

    FastAPI parses a JSON body before it solves dependencies, so a malformed body would
    be answered 422 to anyone. With this route class the caller gets 401 or 403 first and
    learns nothing about the body until the token may use the route. The role dependency
    still runs (and gives the route its ``Principal``); it repeats a cheap check.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        role = required_role(self.dependant)
        if role is None:
            return handler

        async def authenticated(request: Request) -> Response:
            authenticator = state_part(request, "authenticator", TokenAuthenticator)
            principal = authenticator.authenticate(request.headers.get("authorization"))
            require(principal, role, action=_ACTIONS[role])
            return await handler(request)

        return authenticated
