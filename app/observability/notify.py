"""Webhook notifications on decision changes (``docs/operations.md``).

``decision_changed`` only builds the request and puts it on a bounded queue; worker tasks
deliver it with retries (exponential backoff with jitter, a timeout per attempt), so a
slow or failing receiver never delays a decision. When the queue is full the newest
notification is dropped and counted.

JSON bodies are signed: ``X-Gonogo-Signature: sha256=<hex HMAC-SHA256 of the body>`` with
the secret from the target's ``secret_env``. Slack bodies follow the go-live status-update
template (status Green/Yellow/Red, availability, critical issues, performance, next update).

Webhook URLs can carry secrets (a Slack incoming-webhook URL is one), so logs name the
receiver by scheme and host only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from app.core.clock import Clock
from app.observability import metrics
from gates.conditions import format_duration
from gates.engine import CriterionOutcome, CriterionResult, Decision, Verdict
from gates.model import Gate, Notify
from gates.units import Unit, format_value

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Gonogo-Signature"
USER_AGENT = "gonogo-webhook/1"

STATUS_COLOURS = {
    Decision.GO: ("Green", ":large_green_circle:"),
    Decision.NO_GO: ("Yellow", ":large_yellow_circle:"),
    Decision.ROLLBACK: ("Red", ":red_circle:"),
}
_AVAILABILITY = re.compile(r"availab|uptime", re.IGNORECASE)
_LATENCY = re.compile(r"latency|response|duration|p9\d|p50", re.IGNORECASE)


class DeliveryFailed(Exception):
    """A receiver answered with a status worth retrying (5xx, 429)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    gate: str
    url: str
    body: bytes
    headers: Mapping[str, str]

    @property
    def receiver(self) -> str:
        """Scheme and host only: the rest of a webhook URL may be a secret."""
        return receiver_of(self.url)


def sign(body: bytes, secret: str) -> str:
    """The ``X-Gonogo-Signature`` value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def json_body(
    verdict: Verdict, *, previous: Decision | None, check: Mapping[str, Any] | None
) -> dict[str, Any]:
    body = verdict.as_dict()
    body["previous"] = previous.value if previous is not None else None
    if check is not None:
        body["check"] = dict(check)
    return body


def _shown(gate: Gate, result: CriterionResult, usual: Unit) -> str:
    """A criterion's value in its unit (the gate's criterion says it; a stored result
    may not), or in ``usual`` for a criterion with plain numbers."""
    if result.value is None:
        return "unknown"
    criterion = next((c for c in gate.criteria if c.name == result.name), None)
    unit = criterion.value_unit() if criterion is not None else result.unit
    return format_value(result.value, unit if unit is not None else usual)


def _is_latency(result: CriterionResult) -> bool:
    return bool(_LATENCY.search(result.name)) or result.go.rstrip().endswith(("s", "ms"))


def slack_body(
    gate: Gate,
    verdict: Verdict,
    *,
    previous: Decision | None,
    check: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A go-live status update: status, availability, critical issues, performance, next."""
    colour, emoji = STATUS_COLOURS[verdict.decision]
    status = f"{emoji} *{colour}* ({verdict.decision.value})"
    if previous is not None:
        previous_colour, _ = STATUS_COLOURS[previous]
        status += f", was {previous_colour} ({previous.value})"

    availability = next((r for r in verdict.criteria if _AVAILABILITY.search(r.name)), None)
    if availability is None:
        availability_text = "not measured by this gate"
    elif availability.value is None:
        availability_text = f"unknown ({availability.reason})"
    else:
        availability_text = f"{_shown(gate, availability, Unit.PERCENT)} (go: {availability.go})"

    issues = [
        f"• {r.name} ({r.outcome.value}): {r.reason}"
        for r in verdict.criteria
        if r.outcome is not CriterionOutcome.PASS and not r.dry_run
    ]
    if verdict.decision is not Decision.GO:
        criteria_reasons = {f"{r.name}: {r.reason}" for r in verdict.criteria}
        issues.extend(f"• {reason}" for reason in verdict.reasons if reason not in criteria_reasons)
    issues_text = "\n".join(issues) if issues else "None"

    performance = [
        f"• {r.name}: {_shown(gate, r, Unit.SECONDS)} (go: {r.go})"
        for r in verdict.criteria
        if _is_latency(r)
    ]
    performance_text = "\n".join(performance) if performance else "no latency criteria"

    interval = format_duration(gate.interval)
    if verdict.evaluated_at is not None:
        at = (verdict.evaluated_at + gate.interval).strftime("%H:%M:%S UTC")
        next_text = f"on the next change; gate re-evaluated every {interval} (next at {at})"
    else:
        next_text = f"on the next change; gate re-evaluated every {interval}"

    title = f"Go-live status update: {gate.name}"
    if check is not None:
        release = " ".join(
            f"{key} {check[key]}"
            for key in ("version", "environment", "stage")
            if check.get(key) is not None
        )
        if release:
            title += f" ({release})"
    fields = [
        ("Status", status),
        ("Availability", availability_text),
        ("Critical issues", issues_text),
        ("Performance", performance_text),
        ("Next update", next_text),
    ]
    if verdict.dry_run_reasons:  # judged, not deciding: said apart from the issues
        dry_run = "\n".join(f"• {reason}" for reason in verdict.dry_run_reasons)
        fields.insert(3, ("Dry run (not deciding)", dry_run))
    text = "\n".join([f"*{title}*", *(f"*{label}:* {value}" for label, value in fields)])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        *(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{label}:*\n{value}"[:3000]}}
            for label, value in fields
        ),
    ]
    return {"text": text, "blocks": blocks}


def receiver_of(url: str) -> str:
    """Scheme and host of a webhook URL, the only part of it that logs may show."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def build_delivery(
    gate: Gate,
    target: Notify,
    verdict: Verdict,
    *,
    previous: Decision | None,
    check: Mapping[str, Any] | None,
    extra_headers: Mapping[str, str] | None = None,
) -> Delivery:
    """The request announcing ``verdict`` to ``target``: its body in the target's format,
    signed with the secret its ``secret_env`` names (unsigned, with a warning, when that
    variable is unset). Every path that notifies builds its requests here."""
    if target.format == "slack":
        payload = slack_body(gate, verdict, previous=previous, check=check)
    else:
        payload = json_body(verdict, previous=previous, check=check)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    headers.update(extra_headers or {})
    if target.secret_env is not None:
        secret = os.environ.get(target.secret_env)
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        else:
            log.warning(
                "webhook secret variable is not set; sending unsigned",
                gate=gate.name,
                variable=target.secret_env,
            )
    return Delivery(gate.name, target.url, body, headers)


def worth_retrying(status: int) -> bool:
    """Whether a receiver's answer is a refusal for now (5xx, 429) rather than for good."""
    return status >= 500 or status == 429


class Notifier:
    def __init__(
        self,
        *,
        clock: Clock,
        client: httpx.AsyncClient | None = None,
        queue_size: int = 1000,
        workers: int = 4,
        attempts: int = 4,
        attempt_timeout: float = 5.0,
        backoff: timedelta = timedelta(seconds=1),
        max_backoff: timedelta = timedelta(seconds=30),
    ) -> None:
        self._clock = clock
        self._client = client
        self._owns_client = client is None
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=queue_size)
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []
        self._attempts = attempts
        self._attempt_timeout = attempt_timeout
        self._backoff = backoff.total_seconds()
        self._max_backoff = max_backoff.total_seconds()

    @property
    def pending(self) -> int:
        """Notifications waiting for a worker."""
        return self._queue.qsize()

    def decision_changed(
        self,
        gate: Gate,
        verdict: Verdict,
        *,
        previous: Decision | None,
        check: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a notification to each of ``gate.notify``; returns at once."""
        for target in gate.notify:
            delivery = build_delivery(gate, target, verdict, previous=previous, check=check)
            try:
                self._queue.put_nowait(delivery)
            except asyncio.QueueFull:
                metrics.notification_sent("dropped")
                log.warning(
                    "notification dropped: queue full", gate=gate.name, receiver=delivery.receiver
                )

    async def start(self) -> None:
        if self._workers:
            return
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        self._workers = [
            asyncio.create_task(self._work(), name=f"gonogo-notifier-{index}")
            for index in range(self._worker_count)
        ]

    async def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``drain_timeout`` seconds, then stop.

        Shutdown is bounded too: a receiver that holds its connection open cannot keep
        the process from stopping."""
        if self._workers:
            try:
                await asyncio.wait_for(self._queue.join(), timeout=drain_timeout)
            except TimeoutError:
                log.warning("notifier stopped with undelivered notifications", pending=self.pending)
            for worker in self._workers:
                worker.cancel()
            await asyncio.wait(self._workers, timeout=self._attempt_timeout)
            self._workers = []
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            try:
                await asyncio.wait_for(client.aclose(), timeout=self._attempt_timeout)
            except TimeoutError:
                log.warning("webhook connections did not close in time")

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(delivery)
            except Exception:  # a worker must outlive any single delivery
                log.exception("notification worker fault", gate=delivery.gate)
                metrics.notification_sent("error")
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: Delivery) -> None:
        retrying = AsyncRetrying(
            sleep=self._clock.sleep,
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(
                multiplier=self._backoff, max=self._max_backoff, jitter=self._backoff
            ),
            retry=retry_if_exception_type((DeliveryFailed, httpx.TransportError, TimeoutError)),
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    status = await self._post(delivery)
        except RetryError as gave_up:
            cause = gave_up.last_attempt.exception()
            metrics.notification_sent("error")
            log.warning(
                "notification failed",
                gate=delivery.gate,
                receiver=delivery.receiver,
                attempts=self._attempts,
                error=describe_error(cause),
            )
            return
        if status >= 400:
            metrics.notification_sent("error")
            log.warning(
                "notification rejected",
                gate=delivery.gate,
                receiver=delivery.receiver,
                status=status,
            )
            return
        metrics.notification_sent("ok")

    async def _post(self, delivery: Delivery) -> int:
        assert self._client is not None, "start() the notifier first"
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # races with the answer, leaving a worker that ignores stop().
        async with asyncio.timeout(self._attempt_timeout):
            response = await self._client.post(
                delivery.url, content=delivery.body, headers=dict(delivery.headers)
            )
        if worth_retrying(response.status_code):
            raise DeliveryFailed(f"HTTP {response.status_code}")
        return response.status_code


def describe_error(error: BaseException | None) -> str:
    """A failed attempt's cause for a log line, never quoting the URL."""
    if error is None:
        return "unknown"
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, httpx.HTTPError):
        # httpx messages may quote the URL; the exception type says enough.
        return type(error).__name__
    return str(error)
