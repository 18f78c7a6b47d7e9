"""The HTTP client every built-in probe shares: one pooled connection set per source.

``SourceClient`` sends through one pooled ``aiohttp`` session per source and turns
everything the remote side can do wrong into one exception, ``ProbeFailure``, whose
``detail`` is safe to show. Probes catch it and return an inconclusive measurement.

Why aiohttp and not ``httpx.AsyncClient`` (even on the ``httpx_aiohttp`` transport):
``bench/probe_fanout.py`` measured the httpx layer at under a fifth of raw aiohttp's
throughput at 32 requests in flight (its URL parsing re-validates every character of a
long PromQL query on each call), far from the 60 % a probe needs to keep 1,000 gates
cheap. Credentials may still be given as an ``httpx.Auth`` (e.g. ``httpx.BasicAuth``)
whose flow needs no challenge.

What it guarantees:
- each try is bounded by ``timeout`` seconds, body included;
- idempotent reads are retried at most ``retries`` times, with full-jitter exponential
  backoff, on connection errors, timeouts, 5xx and 429; ``Retry-After`` (seconds or an
  HTTP date) and ``X-RateLimit-Reset`` (seconds) are honoured up to ``MAX_RETRY_WAIT``;
  a wait that would not leave time for another try within the budget ends the retries;
- other 4xx are never retried; 401/403 say "unauthorized"/"forbidden";
- bodies are read as a stream and cut off past ``max_body_bytes``;
- every value in ``secrets`` (and its encoded forms, see ``Scrubber``) is replaced by
  ``***`` in details and error bodies; ``secrets()`` lists them, so the sampler scrubs
  every text of every measurement the probe returns, successful ones included;
- a measurement deadline set by the sampler (``measurement_deadline``) bounds every try
  and ends the retries, so all tries together never outlast the sample's time cap;
- there is no pool-wide connection cap: a fixed cap shared by every gate asking one
  source lets gates stuck on it starve the healthy ones, so the caller bounds the
  requests each of its users has in flight instead (the gate sampler does, per sample).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import functools
import html
import json as jsonlib
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Container, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, urlsplit

import aiohttp
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from probes.base import Measurement, MeasurementStatus
from probes.errors import ProbeError

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Longest pause a server's Retry-After may impose on one measurement.
MAX_RETRY_WAIT = 10.0
# Backoff allowance per retry, mirroring the sampler's budget for one measurement
# (timeout x tries + this x retries), so the client gives up before the sampler cuts it off.
RETRY_ALLOWANCE = 2.0
_BACKOFF = wait_random_exponential(multiplier=0.2, max=RETRY_ALLOWANCE)
_EXCERPT_CHARS = 200
_MASK = "***"

Sleep = Callable[[float], Awaitable[None]]

# -- secrets -------------------------------------------------------------------------------

# A secret this long or longer is also masked when only its start shows (a source's text
# cut off mid-secret); a run of fewer characters than this is not masked on its own.
_PARTIAL_FROM_LENGTH = 12
_PARTIAL_MIN_CHARS = 8
# Base64 of fewer characters than this could match innocent text.
_MIN_BASE64_CORE = 8


def _base64_cores(raw: bytes) -> set[str]:
    """The base64 text that encodes ``raw`` wherever it sits inside a longer value
    (``user:secret`` in a Basic header, say): for each of the three alignments, the
    characters that depend on ``raw``'s bytes alone."""
    cores: set[str] = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw + b"\0\0").decode()
            start = -(-8 * offset // 6)
            end = (8 * (offset + len(raw))) // 6
            core = encoded[start:end]
            if len(core) >= _MIN_BASE64_CORE:
                cores.add(core)
    return cores


def secret_forms(secret: str) -> set[str]:
    """The ways ``secret`` can show up in text a source sends back: as it is,
    percent-encoded (either case of hex, ``+`` or ``%20`` for spaces), base64 (standard
    or URL-safe, at any alignment inside a longer value), JSON-escaped, HTML-escaped."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), f) for f in list(forms)}
    forms |= _base64_cores(secret.encode())
    forms.add(jsonlib.dumps(secret)[1:-1])
    forms.add(jsonlib.dumps(secret, ensure_ascii=False)[1:-1])
    forms.add(html.escape(secret))
    return {f for f in forms if f}


class Scrubber:
    """Replaces every known secret, in every form ``secret_forms`` lists, by ``***``.

    A long secret (or a long form of one) is also masked where only its first characters
    show (text cut off in the middle of it), so half a token never reaches a reason.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        unique = {s for s in secrets if s}
        forms = {form for secret in unique for form in secret_forms(secret)}
        # Longest first, so a form containing another is replaced whole.
        self._forms = sorted(forms, key=len, reverse=True)
        self._partial = [f for f in self._forms if len(f) >= _PARTIAL_FROM_LENGTH]

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, _MASK)
        for form in self._partial:
            text = _mask_partial(text, form)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every string inside it (lists, dicts, keys too) scrubbed."""
        if not self._forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        return value


def _mask_partial(text: str, secret: str) -> str:
    head = secret[:_PARTIAL_MIN_CHARS]
    start = text.find(head)
    while start != -1:
        end = start + len(head)
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        text = text[:start] + _MASK + text[end:]
        start = text.find(head, start + len(_MASK))
    return text


@functools.lru_cache(maxsize=4096)
def scrubber(secrets: tuple[str, ...]) -> Scrubber:
    """The ``Scrubber`` for ``secrets`` (built once per set of secrets)."""
    return Scrubber(secrets)


# -- time ------------------------------------------------------------------------------------

# The instant (``time.monotonic()``) by which the current measurement must be over, all
# tries included; set by the sampler around each ``measure`` call.
measurement_deadline: ContextVar[float | None] = ContextVar(
    "gonogo_measurement_deadline", default=None
)


@contextlib.contextmanager
def deadline_in(seconds: float) -> Iterator[None]:
    """Every ``SourceClient`` call made inside the block ends within ``seconds``."""
    when = time.monotonic() + seconds
    current = measurement_deadline.get()
    token = measurement_deadline.set(when if current is None else min(current, when))
    try:
        yield
    finally:
        measurement_deadline.reset(token)


# -- URLs and headers --------------------------------------------------------------------------

# Header names whose values are credentials, whatever the probe type.
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "dd-api-key",
        "dd-application-key",
        "private-token",
    }
)
_SENSITIVE_WORDS = ("token", "secret", "key", "auth", "cookie", "session", "password")


def is_sensitive_header(name: str) -> bool:
    """Whether a header of this name carries a credential, so its value is never shown."""
    lowered = name.strip().lower()
    return lowered in SENSITIVE_HEADERS or any(word in lowered for word in _SENSITIVE_WORDS)


class ProbeFailure(Exception):
    """A source could not give a usable answer. ``detail`` is safe to show a human.

    ``body`` is the parsed JSON of an error response when it parsed, else a short text
    excerpt, else None. ``retry_after`` is the server's requested pause, if it sent one.
    """

    def __init__(
        self,
        status: MeasurementStatus,
        detail: str,
        *,
        http_status: int | None = None,
        body: Any | None = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.http_status = http_status
        self.body = body
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.retryable = retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True, slots=True)
class JsonResponse:
    status_code: int
    headers: Mapping[str, str]
    json: Any


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A response of any status; ``elapsed`` is seconds from sending to the body's end."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class MissingSecret(ProbeError, ValueError):
    """A probe config names an environment variable that is not set."""


def secret_from_env(var_name: str | None, *, field: str) -> str | None:
    """The secret held by ``var_name``, or None when the config names no variable."""
    if var_name is None:
        return None
    value = os.environ.get(var_name)
    if not value:
        raise MissingSecret(
            f"{field}: environment variable {var_name} is not set (it should hold the secret)"
        )
    return value


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The pause a server asked for: ``Retry-After`` (seconds or HTTP date) or Datadog's
    ``X-RateLimit-Reset`` (seconds until the window resets)."""
    for name in ("retry-after", "x-ratelimit-reset"):
        value = headers.get(name)
        if not value:
            continue
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        if name == "retry-after":
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return None


def _status_text(code: int) -> str:
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase.lower()}"
    except ValueError:
        return f"HTTP {code}"


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _transport_failure(error: Exception, url: str, timeout: float) -> ProbeFailure:
    """What went wrong below HTTP, in words an on-call engineer recognises."""
    host = urlsplit(url).hostname or url
    chain = list(_causes(error))
    if any(isinstance(e, socket.gaierror | aiohttp.ClientConnectorDNSError) for e in chain):
        detail = f"cannot resolve host {host}"
    elif any(
        isinstance(e, ConnectionRefusedError)
        or (isinstance(e, OSError) and e.errno == errno.ECONNREFUSED)
        for e in chain
    ):
        detail = "connection refused"
    elif any(isinstance(e, aiohttp.ServerDisconnectedError) for e in chain):
        detail = "server closed the connection"
    elif any(isinstance(e, TimeoutError | aiohttp.ServerTimeoutError) for e in chain):
        return ProbeFailure(
            MeasurementStatus.TIMEOUT, f"timed out after {round(timeout, 2):g}s", retryable=True
        )
    elif isinstance(error, aiohttp.ClientConnectorError):
        detail = f"cannot connect to {host}"
    else:
        detail = f"connection error: {type(error).__name__}"
    return ProbeFailure(MeasurementStatus.ERROR, detail, retryable=True)


def _error_body(body: bytes) -> Any | None:
    if not body:
        return None
    try:
        return jsonlib.loads(body)
    except ValueError:
        text = " ".join(body[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace").split())
        return text[:_EXCERPT_CHARS] or None


@dataclass
class _Attempts:
    count: int = 0
    started: float = field(default_factory=time.monotonic)


class SourceClient:
    """One pooled HTTP client for one source (a Prometheus, a Datadog site, a health URL).

    ``path`` arguments are joined to ``base_url`` (a base with a path prefix keeps it:
    ``http://host/prom`` + ``/api/v1/query``); an absolute URL is used as it is.
    """

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        retries: int,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        max_connections: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        secrets: Sequence[str] = (),
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``max_connections``: 0 (the default) sets no pool-wide cap; see the module
        docstring for why the bound is per sample instead."""
        self._timeout = timeout
        self._tries = 1 + max(0, retries)
        self._max_body_bytes = max_body_bytes
        self._sleep = sleep
        self._max_connections = max_connections
        self.base_url = base_url
        self._base = base_url.rstrip("/") + "/"
        self._headers = {"Accept": "application/json", **(headers or {})}
        if isinstance(auth, tuple):
            user_pass = f"{auth[0]}:{auth[1]}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(user_pass).decode()
        self._auth_flow = auth if isinstance(auth, httpx.Auth) else None
        sent = [*secrets, *(auth[1:] if isinstance(auth, tuple) else ())]
        # Whatever credential headers carry is secret too (the whole Basic value, a
        # token a config put in a header).
        credential_headers = {**self._headers, **self._flow_headers("GET", self._base)}
        for name, value in credential_headers.items():
            if is_sensitive_header(name):
                sent.append(value)
                sent.extend(value.split(None, 1)[1:])  # the token after "Bearer "/"Basic "
        self._secrets = tuple(dict.fromkeys(s for s in sent if s))
        self._scrubber = scrubber(self._secrets)
        # Created on first use: a session belongs to the running event loop.
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        # Headers and auth stay out: they may hold tokens.
        return f"SourceClient(base_url={self.base_url!r})"

    @property
    def budget(self) -> float:
        """Seconds one call may take, every try and backoff included."""
        return self._timeout * self._tries + RETRY_ALLOWANCE * (self._tries - 1)

    def secrets(self) -> tuple[str, ...]:
        """The credentials this client sends (the probe's declared secrets)."""
        return self._secrets

    def scrub(self, text: str) -> str:
        """``text`` with every secret this client knows replaced by ``***``."""
        return self._scrubber.text(text)

    async def get_json(
        self,
        path: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: Container[int] = range(200, 300),
    ) -> JsonResponse:
        raw = await self._call(
            "GET", path, params=params, headers=headers, body=None, ok_statuses=ok_statuses
        )
        try:
            return self._json(raw)
        except ProbeFailure as failure:
            raise self._final(failure, 1) from None

    async def post_json(
        self,
        path: str,
        *,
        json: Any,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        ok_statuses: Container[int] = range(200, 300),
    ) -> JsonResponse:
        raw = await self._call(
            "POST",
            path,
            params=None,
            headers=headers,
            body=json,
            ok_statuses=ok_statuses,
            tries=None if idempotent else 1,
        )
        try:
            return self._json(raw)
        except ProbeFailure as failure:
            raise self._final(failure, 1) from None

    async def get(
        self, path: str, *, params: Any = None, headers: Mapping[str, str] | None = None
    ) -> RawResponse:
        """Any status is an answer here (a health check reads 503 as "down"); only
        failures to get an answer at all are retried and raised."""
        return await self._call(
            "GET", path, params=params, headers=headers, body=None, ok_statuses=None
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, path: str) -> str:
        if "://" in path:
            return path
        return self._base + path.lstrip("/") if path else self.base_url

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ttl_dns_cache=60, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, connect=self._timeout),
                trust_env=False,
            )
        return self._session

    def _flow_headers(self, method: str, url: str) -> dict[str, str]:
        """Headers an ``httpx.Auth`` adds to a request (flows needing no challenge)."""
        if self._auth_flow is None:
            return {}
        request = httpx.Request(method, url)
        next(self._auth_flow.sync_auth_flow(request))
        return {k: v for k, v in request.headers.items() if k.lower() == "authorization"}

    # -- one call ------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Any,
        headers: Mapping[str, str] | None,
        body: Any,
        ok_statuses: Container[int] | None,
        tries: int | None = None,
    ) -> RawResponse:
        attempts = _Attempts()
        max_tries = tries or self._tries
        # The call ends by the earlier of its own budget and the measurement's deadline.
        ends_at = attempts.started + self.budget
        cap = measurement_deadline.get()
        if cap is not None:
            ends_at = min(ends_at, cap)

        async def attempt() -> RawResponse:
            attempts.count += 1
            raw = await self._send(
                method, path, params=params, headers=headers, body=body, ends_at=ends_at
            )
            if ok_statuses is not None and raw.status_code not in ok_statuses:
                raise self._status_failure(raw)
            return raw

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= max_tries:
                return True
            # Another try must fit whole, after its backoff, before the call's end.
            return time.monotonic() + state.upcoming_sleep + self._timeout > ends_at

        try:
            # Most calls succeed at once: tenacity's bookkeeping is paid only for retries.
            return await attempt()
        except ProbeFailure as failure:
            if not failure.retryable or max_tries == 1:
                raise self._final(failure, 1) from None
            first_failure: ProbeFailure | None = failure

        async def replay_first_then_attempt() -> RawResponse:
            # Tenacity sees the failed first try as its own attempt 1, so its wait and
            # stop rules apply to it without sending it again.
            nonlocal first_failure
            if first_failure is not None:
                failed, first_failure = first_failure, None
                raise failed
            return await attempt()

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, ProbeFailure) and e.retryable),
            wait=_wait,
            stop=stop,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return await retrying(replay_first_then_attempt)
        except ProbeFailure as failure:
            raise self._final(failure, attempts.count) from None

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Any,
        headers: Mapping[str, str] | None,
        body: Any,
        ends_at: float | None = None,
    ) -> RawResponse:
        url = self._url(path)
        extra = {**(headers or {}), **self._flow_headers(method, url)}
        timeout = self._timeout
        if ends_at is not None:
            timeout = min(timeout, ends_at - time.monotonic())
            if timeout <= 0:
                raise ProbeFailure(
                    MeasurementStatus.TIMEOUT, "no time left within the measurement's time cap"
                )
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(timeout),
                self._session_now().request(
                    method,
                    url,
                    params=params,
                    headers=extra or None,
                    json=body,
                    allow_redirects=False,
                ) as response,
            ):
                content = await self._read_capped(response)
        except ProbeFailure:
            raise
        except (ValueError, aiohttp.InvalidURL) as bad:
            raise ProbeFailure(MeasurementStatus.ERROR, f"invalid URL: {bad}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise _transport_failure(error, url, timeout) from None
        return RawResponse(
            response.status, response.headers, content, time.perf_counter() - started
        )

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self._max_body_bytes
        if response.content_length is not None and response.content_length > limit:
            raise self._too_large(response)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise self._too_large(response)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, response: aiohttp.ClientResponse) -> ProbeFailure:
        mib = self._max_body_bytes / (1024 * 1024)
        size = f"{mib:g} MiB" if mib >= 1 else f"{self._max_body_bytes} bytes"
        return ProbeFailure(
            MeasurementStatus.ERROR,
            f"response body larger than {size}",
            http_status=response.status,
            headers=response.headers,
        )

    def _status_failure(self, raw: RawResponse) -> ProbeFailure:
        code = raw.status_code
        body = _error_body(raw.body)
        if code == 429:
            wait = retry_after_seconds(raw.headers)
            return ProbeFailure(
                MeasurementStatus.ERROR,
                "rate limited (HTTP 429)",
                http_status=code,
                body=body,
                headers=raw.headers,
                retryable=True,
                retry_after=wait,
            )
        return ProbeFailure(
            MeasurementStatus.ERROR,
            _status_text(code),
            http_status=code,
            body=body,
            headers=raw.headers,
            retryable=code >= 500,
            retry_after=retry_after_seconds(raw.headers) if code == 503 else None,
        )

    def _final(self, failure: ProbeFailure, tries: int) -> ProbeFailure:
        detail = failure.detail
        if tries > 1:
            detail = f"{detail} after {tries} tries"
        elif failure.retryable and failure.retry_after is not None and self._tries > 1:
            detail = f"{detail}; server asked to wait {failure.retry_after:g}s, beyond the budget"
        return ProbeFailure(
            failure.status,
            self.scrub(detail),
            http_status=failure.http_status,
            body=self._scrub_value(failure.body),
            headers=failure.headers,
            retryable=failure.retryable,
            retry_after=failure.retry_after,
        )

    def _scrub_value(self, value: Any) -> Any:
        return self._scrubber.value(value)

    def _json(self, raw: RawResponse) -> JsonResponse:
        try:
            parsed = jsonlib.loads(raw.body)
        except ValueError as bad:
            if isinstance(bad, jsonlib.JSONDecodeError):
                reason = f"{bad.msg} at char {bad.pos}"
            else:
                reason = "not UTF-8 text"
            raise ProbeFailure(
                MeasurementStatus.ERROR,
                f"invalid JSON: {reason}",
                http_status=raw.status_code,
                body=_error_body(raw.body),
                headers=raw.headers,
            ) from None
        return JsonResponse(raw.status_code, raw.headers, parsed)


def _wait(state: RetryCallState) -> float:
    failure = state.outcome.exception() if state.outcome is not None else None
    if isinstance(failure, ProbeFailure) and failure.retry_after is not None:
        return min(failure.retry_after, MAX_RETRY_WAIT)
    return float(_BACKOFF(state))


def failure_measurement(
    failure: ProbeFailure,
    observed_at: datetime,
    *,
    source: str,
    credential: str | None = None,
    detail: str | None = None,
) -> Measurement:
    """The inconclusive measurement for ``failure``: ``"<source>: <detail>"``, plus a hint
    naming the ``*_env`` variable (``credential``, e.g. ``"token_env PROM_TOKEN"``) when
    the source refused the credentials."""
    text = f"{source}: {detail or failure.detail}"
    if failure.http_status in (401, 403):
        text += f"; check {credential}" if credential else "; the source wants credentials"
    if failure.status is MeasurementStatus.TIMEOUT:
        return Measurement.timeout(text, observed_at)
    if failure.status is MeasurementStatus.NO_DATA:
        return Measurement.no_data(text, observed_at)
    return Measurement.error(text, observed_at)


ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Credentials never go in a URL (``refuse_userinfo``, applied to every probe's ``url``).
HTTP_URL_PATTERN = r"^https?://\S+$"


class SourceConfig(Protocol):
    """What every probe config says about its connection."""

    @property
    def timeout(self) -> float: ...
    @property
    def retries(self) -> int: ...


def source_client(
    config: SourceConfig,
    *,
    base_url: str,
    headers: Mapping[str, str],
    secrets: Sequence[str | None] = (),
    auth: tuple[str, str] | None = None,
) -> SourceClient:
    """The pooled client for one probe's source, with the config's timeout and retries;
    ``secrets`` are the credentials it sends, scrubbed from everything it reports."""
    return SourceClient(
        base_url=base_url,
        timeout=config.timeout,
        retries=config.retries,
        headers=headers,
        auth=auth,
        secrets=tuple(s for s in secrets if s),
    )


class BearerSourceConfig(Protocol):
    """A probe config whose source takes an optional ``Authorization: Bearer`` token."""

    @property
    def url(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def token_env(self) -> str | None: ...


def bearer_source(
    config: BearerSourceConfig,
    *,
    defaults: Mapping[str, str] | None = None,
    secrets: Sequence[str | None] = (),
    auth: tuple[str, str] | None = None,
) -> tuple[SourceClient, str | None]:
    """The pooled client for ``config``'s source, sending its token when it names one, and
    the credential to name when the source refuses it (``"token_env X"``). ``defaults``
    are headers the config's own ``headers`` may override."""
    token = secret_from_env(config.token_env, field="token_env")
    headers, sent = bearer_headers({**(defaults or {}), **config.headers}, token)
    client = source_client(
        config, base_url=config.url, headers=headers, secrets=(*sent, *secrets), auth=auth
    )
    return client, f"token_env {config.token_env}" if config.token_env else None


def bearer_headers(
    headers: Mapping[str, str], token: str | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """``headers`` plus ``Authorization: Bearer <token>`` when there is one, and the
    secrets the client must scrub."""
    merged = dict(headers)
    if token is None:
        return merged, ()
    merged["Authorization"] = f"Bearer {token}"
    return merged, (token,)
