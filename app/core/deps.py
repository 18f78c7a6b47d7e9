"""FastAPI dependencies, declared once: the request's session and the caller's role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal, TokenAuthenticator, require
from app.core.clock import Clock
from app.core.db import Database

T = TypeVar("T")


def from_state(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency that reads ``app.state.<name>`` and checks that it is a ``kind``.

    Each domain declares its own (``CatalogDep``, ``RunnerDep``, ...), so routes get typed
    parts and never read ``app.state`` themselves. Async, so it costs no thread-pool hop.
    """

    async def get(request: Request) -> T:
        value = getattr(request.app.state, name, None)
        if not isinstance(value, kind):
            raise RuntimeError(f"app.state.{name} is not a {kind.__name__} (not started?)")
        return value

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
    return check


def RequireRole(role: str) -> Any:
    """``Annotated[Principal, ...]`` for a route that needs at least ``role``."""
    return Annotated[Principal, Depends(_role_checker(role))]


Viewer = Annotated[Principal, Depends(_role_checker("viewer"))]
Pipeline = Annotated[Principal, Depends(_role_checker("pipeline"))]
Approver = Annotated[Principal, Depends(_role_checker("approver"))]
Admin = Annotated[Principal, Depends(_role_checker("admin"))]
