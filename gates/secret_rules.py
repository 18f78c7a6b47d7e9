"""What a gate definition may say about secrets (docs/operations.md, "Secrets"): a
secret is never written in the file, only the name of the environment variable holding
it, and only a variable the operator's ``EnvPolicy`` allows; sensitive headers are named
by variable too."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from gates.errors import Loc
from gates.problems import Problems, did_you_mean
from probes.base import ProbeConfig

# Keys that would hold a secret in the file itself instead of naming an env variable.
_SECRET_KEYS = frozenset(
    {
        "token",
        "api_key",
        "apikey",
        "app_key",
        "application_key",
        "password",
        "secret",
        "access_token",
        "auth_token",
        "bearer",
        "client_secret",
        "private_key",
    }
)
_SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "dd-api-key",
        "dd-application-key",
        "private-token",
        "x-auth-token",
    }
)


@dataclass(frozen=True)
class EnvPolicy:
    """Which environment variables a gate's ``*_env`` keys may name (docs/operations.md).

    ``allow`` holds names or globs (``GONOGO_PROBE_*``); ``reserved`` the service's own
    settings, which no gate may read whatever ``allow`` says. Names are compared without
    regard to case, as the settings themselves are read.
    """

    allow: tuple[str, ...] = ("GONOGO_PROBE_*", "GONOGO_NOTIFY_*")
    reserved: frozenset[str] = frozenset(
        {"GONOGO_TOKENS", "GONOGO_DATABASE_URL", "GONOGO_ENV_ALLOW"}
    )
    setting: str = "GONOGO_ENV_ALLOW"

    def refusal(self, name: str) -> str | None:
        """Why a gate may not read the variable ``name``; ``None`` when it may."""
        upper = name.upper()
        if upper in {r.upper() for r in self.reserved}:
            return f"{name} is one of gonogo's own settings; a gate may never read it"
        if any(fnmatch.fnmatchcase(upper, pattern.upper()) for pattern in self.allow):
            return None
        allowed = ", ".join(self.allow) or "nothing"
        return f"{name} is not allowed by {self.setting} (it allows {allowed})"


DEFAULT_ENV_POLICY = EnvPolicy()


def _env_field_for(secret_key: str, fields: Iterable[str]) -> str:
    names = list(fields)
    wanted = f"{secret_key}_env"
    if wanted in names:
        return wanted
    env_fields = [n for n in names if n.endswith("_env")]
    return env_fields[0] if env_fields else wanted


def check_keys(
    raw: Mapping[str, Any],
    model: type[BaseModel],
    location: Loc,
    problems: Problems,
    *,
    secrets: bool = False,
) -> None:
    known = list(model.model_fields)
    open_model = model.model_config.get("extra") == "allow"
    for key in raw:
        if key in known:
            continue
        if open_model and not (secrets and key.lower() in _SECRET_KEYS):
            continue
        if secrets and key.lower() in _SECRET_KEYS:
            env_field = _env_field_for(key.lower(), known)
            problems.add(
                (*location, key),
                f"{key!r} would hold a secret; secrets never go in gate files",
                f"set {env_field}: NAME, the environment variable that holds it",
                at_key=True,
            )
            continue
        suggestion = did_you_mean(key, known)
        hint = (
            f"did you mean {suggestion!r}?"
            if suggestion
            else f"known keys: {', '.join(sorted(known))}"
        )
        problems.add((*location, key), f"unknown key {key!r}", hint, at_key=True)


def check_inline_secrets(raw: Mapping[str, Any], location: Loc, problems: Problems) -> None:
    """Secrets in a probe whose type is unknown: its other keys cannot be judged."""
    secret_keys = {key: None for key in raw if key.lower() in _SECRET_KEYS}
    check_keys(secret_keys, ProbeConfig, location, problems, secrets=True)
    check_headers(raw.get("headers"), (*location, "headers"), problems)


def check_headers(raw: Any, location: Loc, problems: Problems) -> None:
    if not isinstance(raw, Mapping):
        return
    for header in raw:
        if str(header).lower() in _SECRET_HEADERS:
            problems.add(
                (*location, header),
                f"header {header!r} would hold a secret; secrets never go in gate files",
                "set token_env: NAME (or the probe's other *_env key) instead",
                at_key=True,
            )


def check_env_names(raw: Any, location: Loc, policy: EnvPolicy, problems: Problems) -> None:
    """Every ``*_env`` key under ``raw`` (a probe or a notify target) names a variable
    ``policy`` allows: a gate that could name any variable could send the server's own
    secrets to a URL of its choosing."""
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            at: Loc = (*location, str(key))
            if str(key).endswith("_env") and isinstance(value, str):
                refusal = policy.refusal(value)
                if refusal is not None:
                    example = "GONOGO_PROBE_" if location[:1] == ("probes",) else "GONOGO_NOTIFY_"
                    problems.add(
                        at,
                        refusal,
                        f"name a variable {policy.setting} allows, e.g. {example}"
                        f"{str(key).removesuffix('_env').upper()}",
                    )
            else:
                check_env_names(value, at, policy, problems)
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            check_env_names(item, (*location, index), policy, problems)
