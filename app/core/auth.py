"""Bearer tokens and roles (``docs/operations.md``): viewer < pipeline < approver < admin."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from app.core.problems import Forbidden, Unauthorized
from app.core.settings import ApiToken, Role, role_rank

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gonogo"'}
INVALID_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gonogo", error="invalid_token"'}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (recorded as ``decided_by``, ``signed_by``) and role."""

    name: str
    role: Role

    def has(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)


# With no tokens configured (loopback only) every caller may do everything.
OPEN_ACCESS = Principal(name="anonymous", role="admin")


class TokenAuthenticator:
    def __init__(self, tokens: tuple[ApiToken, ...]) -> None:
        self._tokens = [(t, t.secret.get_secret_value().encode()) for t in tokens]

    @property
    def open(self) -> bool:
        return not self._tokens

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header; raises ``Unauthorized``."""
        if self.open:
            return OPEN_ACCESS
        if not authorization:
            raise Unauthorized(
                "an API token is required: Authorization: Bearer <token>", headers=CHALLENGE
            )
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("use Authorization: Bearer <token>", headers=CHALLENGE)
        presented = given.strip().encode()
        found: ApiToken | None = None
        # Compare with every token, so the time taken does not tell which one nearly matched.
        for token, secret in self._tokens:
            if hmac.compare_digest(presented, secret) and found is None:
                found = token
        if found is None:
            raise Unauthorized("the API token is not valid", headers=INVALID_CHALLENGE)
        return Principal(found.name, found.role)


def require(principal: Principal, role: str, *, action: str) -> None:
    if not principal.has(role):
        raise Forbidden(
            f"{action} needs the {role} role; token {principal.name!r} has {principal.role}"
        )
