"""The GitHub and GitLab front doors' configuration (``docs/integrations.md``).

One YAML file, named by ``GONOGO_INTEGRATIONS_FILE``, says which GitHub App and which
GitLab instance gonogo answers, and maps a repository (or project) and environment to a
gate, with an optional stage and vars for the check. Secrets are only named, by ``*_env``
keys, and the names obey the same allow-list as a gate's (``GONOGO_ENV_ALLOW``). The file
is validated when the service starts; every problem is reported with file, line and
column, and the service does not start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from app.checks.schemas import CheckValue, VarName
from app.core.settings import SettingsError
from gates.errors import GateProblem, Loc, count_of
from gates.problems import Problems
from gates.secret_rules import EnvPolicy
from gates.yaml_source import compose

GITHUB_API = "https://api.github.com"
GITLAB_URL = "https://gitlab.com"

EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
GateName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
# Repository and environment names as the forge sends them; matched exactly.
ForgeName = Annotated[str, StringConstraints(min_length=1, max_length=255)]


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must be a plain base URL (no user, query or fragment)")
    return value.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(_base_url)]


class Rule(BaseModel):
    """Which gate judges a deployment to one environment, and with which check values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Matched exactly against the forge's environment and made the check's environment,
    # so it follows the rule for values a check supplies.
    environment: CheckValue
    gate: GateName
    stage: CheckValue | None = None
    vars: dict[VarName, CheckValue] = Field(default_factory=dict)


class GitHubRule(Rule):
    repository: ForgeName = Field(description="owner/name, as in the webhook's full_name")
    version_from: Literal["sha", "ref"] = "sha"


class GitLabRule(Rule):
    project: ForgeName = Field(description="the project's path_with_namespace, or its id")
    version_from: Literal["short_sha", "ref"] = "short_sha"


class GitHubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.]{1,64}$")] = Field(
        description="the App's id (or client id): the JWT's issuer"
    )
    private_key_env: EnvName
    webhook_secret_env: EnvName
    api_url: BaseUrl = GITHUB_API
    rules: list[GitHubRule] = Field(min_length=1)

    @field_validator("app_id", mode="before")
    @classmethod
    def _number_is_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class GitLabConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: BaseUrl = GITLAB_URL
    token_env: EnvName
    webhook_token_env: EnvName
    rules: list[GitLabRule] = Field(min_length=1)


class IntegrationsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    github: GitHubConfig | None = None
    gitlab: GitLabConfig | None = None


@dataclass(frozen=True)
class GitHubDoor:
    """The GitHub App, with its secrets read from the environment."""

    config: GitHubConfig
    webhook_secret: bytes
    private_key: RSAPrivateKey

    def rule(self, repository: str, environment: str) -> GitHubRule | None:
        return next(
            (
                r
                for r in self.config.rules
                if r.repository == repository and r.environment == environment
            ),
            None,
        )


@dataclass(frozen=True)
class GitLabDoor:
    config: GitLabConfig
    webhook_token: bytes
    token: str

    def rule(self, project: str, project_id: int, environment: str) -> GitLabRule | None:
        return next(
            (
                r
                for r in self.config.rules
                if r.project in (project, str(project_id)) and r.environment == environment
            ),
            None,
        )


@dataclass(frozen=True)
class Doors:
    """The configured front doors; ``None`` for a forge the file does not set up."""

    github: GitHubDoor | None = None
    gitlab: GitLabDoor | None = None

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction."""
        found: list[str] = []
        if self.github is not None:
            found.append(self.github.webhook_secret.decode())
        if self.gitlab is not None:
            found.extend([self.gitlab.webhook_token.decode(), self.gitlab.token])
        return found


class IntegrationsFileError(SettingsError):
    """The integrations file is invalid; the message lists every problem, located."""

    def __init__(self, problems: list[GateProblem]) -> None:
        self.problems = problems
        listed = "\n".join(str(p) for p in problems)
        super().__init__(
            f"invalid GONOGO_INTEGRATIONS_FILE ({count_of(len(problems), 'problem')}):\n{listed}"
        )


def _message(error: Any) -> tuple[str, str | None]:
    if error["type"] == "extra_forbidden":
        return "unknown key", "see docs/integrations.md for the keys of this file"
    if error["type"] == "missing":
        return f"{error['loc'][-1]} is required", None
    return str(error["msg"]).removeprefix("Value error, "), None


def _duplicates(config: IntegrationsConfig, problems: Problems) -> None:
    if config.github is not None:
        seen: set[tuple[str, str]] = set()
        for index, gh_rule in enumerate(config.github.rules):
            pair = (gh_rule.repository, gh_rule.environment)
            if pair in seen:
                problems.add(
                    ("github", "rules", index),
                    f"a second rule for repository {pair[0]!r} environment {pair[1]!r}",
                    "one rule per repository and environment",
                )
            seen.add(pair)
    if config.gitlab is not None:
        seen = set()
        for index, gl_rule in enumerate(config.gitlab.rules):
            pair = (gl_rule.project, gl_rule.environment)
            if pair in seen:
                problems.add(
                    ("gitlab", "rules", index),
                    f"a second rule for project {pair[0]!r} environment {pair[1]!r}",
                    "one rule per project and environment",
                )
            seen.add(pair)


def _secret(
    name: str, location: Loc, policy: EnvPolicy, problems: Problems, *, what: str
) -> str | None:
    refusal = policy.refusal(name)
    if refusal is not None:
        problems.add(location, refusal, f"name a variable {policy.setting} allows")
        return None
    value = os.environ.get(name, "")
    if not value.strip():
        problems.add(location, f"{name} is not set; it must hold {what}")
        return None
    return value


def _private_key(text: str, location: Loc, problems: Problems) -> RSAPrivateKey | None:
    try:
        key = load_pem_private_key(text.replace("\\n", "\n").encode(), password=None)
    except (ValueError, TypeError):
        problems.add(location, "the variable does not hold a PEM private key")
        return None
    if not isinstance(key, RSAPrivateKey):
        problems.add(location, "the App's private key must be an RSA key (GitHub signs RS256)")
        return None
    return key


def parse_integrations(text: str, *, source: str, env_policy: EnvPolicy) -> Doors:
    """The doors ``text`` configures; raises ``IntegrationsFileError`` with every problem."""
    problems = Problems(source)
    document = compose(text, problems)
    if document is None:
        raise IntegrationsFileError(problems.sorted())
    problems.document = document
    data = document.data if document.data is not None else {}
    try:
        config = IntegrationsConfig.model_validate(data)
    except ValidationError as invalid:
        for error in invalid.errors():
            location = tuple(p for p in error["loc"] if isinstance(p, int | str))
            message, hint = _message(error)
            problems.add(location, message, hint, at_key=error["type"] == "extra_forbidden")
        raise IntegrationsFileError(problems.sorted()) from None
    _duplicates(config, problems)
    github = gitlab = None
    if config.github is not None:
        secret = _secret(
            config.github.webhook_secret_env,
            ("github", "webhook_secret_env"),
            env_policy,
            problems,
            what="the App's webhook secret",
        )
        pem = _secret(
            config.github.private_key_env,
            ("github", "private_key_env"),
            env_policy,
            problems,
            what="the App's private key (PEM)",
        )
        key = _private_key(pem, ("github", "private_key_env"), problems) if pem else None
        if secret is not None and key is not None:
            github = GitHubDoor(config.github, secret.encode(), key)
    if config.gitlab is not None:
        hook_token = _secret(
            config.gitlab.webhook_token_env,
            ("gitlab", "webhook_token_env"),
            env_policy,
            problems,
            what="the webhook's secret token",
        )
        api_token = _secret(
            config.gitlab.token_env,
            ("gitlab", "token_env"),
            env_policy,
            problems,
            what="a GitLab access token with the api scope",
        )
        if hook_token is not None and api_token is not None:
            gitlab = GitLabDoor(config.gitlab, hook_token.encode(), api_token)
    if problems.items:
        raise IntegrationsFileError(problems.sorted())
    return Doors(github=github, gitlab=gitlab)


def load_integrations(path: Path | None, *, env_policy: EnvPolicy) -> Doors:
    """The doors of the file at ``path`` (none when unset); raises ``IntegrationsFileError``."""
    if path is None:
        return Doors()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problem = GateProblem(str(path), None, None, (), f"cannot be read: {error}")
        raise IntegrationsFileError([problem]) from None
    return parse_integrations(text, source=str(path), env_policy=env_policy)
