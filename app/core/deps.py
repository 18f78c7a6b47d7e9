"""FastAPI dependencies, declared once: the request's session and the caller's role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal, TokenAuthenticator, require
from app.core.db import Database, run_after_commit, run_on_rollback


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: committed when the route returns without error."""
    db: Database = request.app.state.db
    async with db.sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            run_on_rollback(session)
            raise
        run_after_commit(session)


# scope="function": commit before the response is sent, so a client that reads right
# after a write sees it, and a failed commit is the request's error.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


async def _current_token(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    authenticator: TokenAuthenticator = request.app.state.authenticator
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
