"""Service settings from ``GONOGO_*`` variables (``docs/operations.md``), validated at start-up."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gates.conditions import ConditionError, parse_duration
from gates.errors import count_of
from gates.secret_rules import EnvPolicy

Role = Literal["viewer", "pipeline", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "pipeline", "approver", "admin")
ENV_PREFIX = "GONOGO_"


def role_rank(role: str) -> int:
    return ROLES.index(role)


@dataclass(frozen=True)
class ApiToken:
    """One configured API token. ``secret`` never shows in a repr or a log line."""

    name: str
    role: Role
    secret: SecretStr


class SettingsError(Exception):
    """A setting is invalid; the message names the variable and never echoes its value."""


# A placeholder such as CHANGE-ME, or a guessable word, is refused at start-up.
MIN_SECRET_CHARS = 16


def parse_tokens(text: str) -> tuple[ApiToken, ...]:
    """``name:role:secret,...``; the secret may itself contain ``:``."""
    tokens: list[ApiToken] = []
    names: set[str] = set()
    for position, item in enumerate(part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = item.split(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[2]:
            raise ValueError(
                f"entry {position + 1} is not name:role:secret (it has"
                f" {count_of(len(parts), 'part')})"
            )
        name, role, secret = parts
        if role not in ROLES:
            raise ValueError(
                f"entry {position + 1} ({name}) has role {role!r}; roles are {', '.join(ROLES)}"
            )
        if name in names:
            raise ValueError(f"token name {name!r} is used twice")
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"the secret of token {name!r} is shorter than {MIN_SECRET_CHARS} characters"
                " (make one with: openssl rand -hex 24)"
            )
        if any(t.secret.get_secret_value() == secret for t in tokens):
            raise ValueError(f"token {name!r} has the same secret as another token")
        names.add(name)
        tokens.append(ApiToken(name, role, SecretStr(secret)))
    return tuple(tokens)


DEFAULT_ENV_ALLOW = ("GONOGO_PROBE_*", "GONOGO_NOTIFY_*")
ENV_ALLOW_VARIABLE = ENV_PREFIX + "ENV_ALLOW"
_ENV_GLOB = re.compile(r"^[A-Za-z0-9_*?]+$")


def parse_env_allow(text: str) -> tuple[str, ...]:
    """``GONOGO_ENV_ALLOW``: comma-separated variable names or globs (``*``, ``?``)."""
    patterns = tuple(part.strip() for part in text.split(",") if part.strip())
    for pattern in patterns:
        if not _ENV_GLOB.match(pattern):
            raise ValueError(
                f"{pattern!r} is not a variable name or glob (letters, digits, _, * and ?)"
            )
    return patterns


MIN_LEASE_TTL = timedelta(seconds=1)
_REPLICA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+/=-]{0,127}$")


def default_replica_id() -> str:
    """This process's identity among replicas: hostname and pid."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:100] or "gonogo"
    return f"{host}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./gonogo.db"
    gates_dir: Path | None = None
    tokens: Annotated[tuple[ApiToken, ...], NoDecode] = ()
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    log_format: Literal["json", "console"] = "json"
    sample_retention: Annotated[timedelta, NoDecode] = timedelta(days=7)
    env_allow: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ENV_ALLOW
    # The GitHub and GitLab front doors (docs/integrations.md); unset = both off.
    integrations_file: Path | None = None
    # How people reach this service, for links in messages sent elsewhere.
    public_url: str | None = None
    lease_ttl: Annotated[timedelta, NoDecode] = timedelta(seconds=15)
    replica_id: str = Field(default_factory=default_replica_id)

    @field_validator("env_allow", mode="before")
    @classmethod
    def _parse_env_allow(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_env_allow(value)
        return value

    @field_validator("tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_tokens(value)
        return value

    @field_validator("sample_retention", "lease_ttl", mode="before")
    @classmethod
    def _parse_durations(cls, value: Any) -> Any:
        if isinstance(value, str | int | float):
            try:
                value = parse_duration(value)
            except ConditionError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("sample_retention")
    @classmethod
    def _retention_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("lease_ttl")
    @classmethod
    def _lease_ttl_at_least(cls, value: timedelta) -> timedelta:
        if value < MIN_LEASE_TTL:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("replica_id")
    @classmethod
    def _replica_id_shape(cls, value: str) -> str:
        if not _REPLICA_ID.match(value):
            raise ValueError(
                "must be 1-128 characters from A-Z a-z 0-9 . _ : @ + / = -, starting with"
                " a letter or digit"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// (an async driver)"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must be a plain base URL (no user, query or fragment)")
        return value.rstrip("/")

    @field_validator("integrations_file")
    @classmethod
    def _integrations_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @field_validator("gates_dir", "integrations_file", mode="before")
    @classmethod
    def _empty_dir_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def open_access(self) -> bool:
        """No tokens: anyone who can reach the port may do anything."""
        return not self.tokens

    @property
    def loopback_only(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def env_policy(self) -> EnvPolicy:
        """Which variables gates may read: ``GONOGO_ENV_ALLOW``, never a setting."""
        return env_policy(self.env_allow)

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, for the log redaction."""
        secrets = [token.secret.get_secret_value() for token in self.tokens]
        password = _url_password(self.database_url)
        if password:
            secrets.append(password)
        return secrets


def reserved_variables() -> frozenset[str]:
    """Every variable gonogo reads as a setting: no gate may name one in ``*_env``."""
    return frozenset(ENV_PREFIX + name.upper() for name in Settings.model_fields)


def env_policy(allow: tuple[str, ...] = DEFAULT_ENV_ALLOW) -> EnvPolicy:
    return EnvPolicy(
        allow=allow,
        reserved=EnvPolicy.reserved | reserved_variables(),
        setting=ENV_ALLOW_VARIABLE,
    )


def env_policy_from_environment() -> EnvPolicy:
    """The policy from ``GONOGO_ENV_ALLOW`` alone, for commands that need no other setting
    (``gonogo validate``); raises ``SettingsError`` on a bad value."""
    found = [value for name, value in os.environ.items() if name.upper() == ENV_ALLOW_VARIABLE]
    if not found:
        return env_policy()
    try:
        return env_policy(parse_env_allow(found[0]))
    except ValueError as bad:
        raise SettingsError(f"invalid settings: {ENV_ALLOW_VARIABLE}: {bad}") from None


def _url_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except ArgumentError:
        return None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        variable = ENV_PREFIX + field.upper() if field else ENV_PREFIX + "*"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{variable}: {message}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, ``overrides`` winning; raises ``SettingsError``."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(f"invalid settings: {_describe(error)}") from None


def validate_bind(settings: Settings) -> None:
    """No tokens is allowed only on loopback; raises ``SettingsError`` otherwise."""
    if settings.open_access and not settings.loopback_only:
        raise SettingsError(
            f"refusing to serve without authentication on {settings.host}: set GONOGO_TOKENS"
            " (name:role:secret,...) or bind to 127.0.0.1"
        )
