"""Structured logging (structlog): JSON lines or console, with secrets redacted.

Standard-library loggers (uvicorn, SQLAlchemy, Alembic) go through the same processors,
so the redaction covers every line the process writes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from probes.client import secret_forms

REDACTED = "[redacted]"
# Short values would redact innocent text; secrets are longer (tokens need 8+ characters).
MIN_SECRET_LENGTH = 6


class SecretRedactor:
    """A structlog processor that replaces every known secret value in an event, in each
    of the forms a secret takes on the wire (percent-encoded, base64 as in a Basic
    header, JSON- or HTML-escaped: ``probes.client.secret_forms``)."""

    def __init__(self) -> None:
        self._secrets: list[str] = []
        self._known: set[str] = set()

    def add(self, values: Iterable[str | None]) -> None:
        for value in values:
            if not value or len(value) < MIN_SECRET_LENGTH or value in self._known:
                continue
            self._known.add(value)
            for form in secret_forms(value):
                if len(form) >= MIN_SECRET_LENGTH and form not in self._secrets:
                    self._secrets.append(form)
        # Longest first, so a secret containing another is replaced whole.
        self._secrets.sort(key=len, reverse=True)

    def clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {key: self.clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.clean(item) for item in value)
        if isinstance(value, BaseException):
            return self.clean(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event
        return {key: self.clean(item) for key, item in event.items()}


redactor = SecretRedactor()


def _render_exception_then_redact() -> list[Any]:
    # Tracebacks are rendered to text first so the redactor sees what will be written.
    return [structlog.processors.format_exc_info, redactor]


class ReplicaStamp:
    """A structlog processor that names this replica in every event (``replica``), so the
    lines of several replicas can be told apart once collected."""

    def __init__(self, replica: str) -> None:
        self.replica = replica

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event.setdefault("replica", self.replica)
        return event


def configure_logging(
    log_format: str = "json",
    *,
    secrets: Iterable[str | None] = (),
    stream: TextIO | None = None,
    level: int = logging.INFO,
    replica: str | None = None,
) -> None:
    """Set up structlog and the standard library's logging; call once at start-up.
    ``replica`` (``GONOGO_REPLICA_ID``) is added to every line."""
    redactor.add(secrets)
    stamp: list[Any] = [ReplicaStamp(replica)] if replica else []
    shared: list[Any] = [
        *stamp,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_render_exception_then_redact(),
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_gonogo", False):
            root.removeHandler(existing)
    handler._gonogo = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
