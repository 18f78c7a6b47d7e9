"""Freshness: a decision is served as ``no_go`` once it has expired (``docs/decisions.md``,
"Freshness and expiry").

Every decision carries ``expires_at = evaluated_at + max(3 x interval, 10s)``. Every read
path (the decision API and its read lane, the gate list, the status page, the Flagger
webhook, ``/metrics``, a running check's body) goes through one function here, judged with
the reading process's clock:

- ``PublishedDecision.view(now)``: the continuous decision as the scheduler holds it. It
  has no other accessor, so no read can serve the stored body without the check.
- ``current_check_body(body, now)``: a running check's stored body.

Staleness is only a view: nothing here is stored, counted as an evaluation or notified.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gates.conditions import format_duration
from gates.engine import Decision, Verdict
from probes.timefmt import iso


def decision_body(
    verdict: Verdict, expires_at: datetime | None, *, gate_version: str | None = None
) -> dict[str, Any]:
    """The decision body (``docs/api.md``): the verdict plus ``expires_at`` and, for a
    continuous decision, the ``gate_version`` that judged it."""
    body = verdict.as_dict()
    ordered: dict[str, Any] = {}
    for key, value in body.items():
        ordered[key] = value
        if key == "evaluated_at":
            ordered["expires_at"] = iso(expires_at)
            if gate_version is not None:
                ordered["gate_version"] = gate_version
    return ordered


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A decision body as UTF-8 JSON bytes."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def stale_reason(
    evaluated_at: datetime,
    expires_at: datetime,
    interval: timedelta | None,
    *,
    unrecorded_since: datetime | None = None,
) -> str:
    """``stale since 2026-11-24T10:03:00Z: last evaluated 2026-11-24T10:02:30Z, expected
    every 30s``; when samples could not be stored, since when instead."""
    if unrecorded_since is not None:
        return (
            f"stale since {iso(expires_at)}: no sample stored since {iso(unrecorded_since)}"
            f" (last evaluated {iso(evaluated_at)}; the database is not answering)"
        )
    expected = (
        f"expected every {format_duration(interval)}" if interval is not None else "no sample since"
    )
    return f"stale since {iso(expires_at)}: last evaluated {iso(evaluated_at)}, {expected}"


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a decision that expires at ``expires_at`` may no longer be trusted at ``now``.

    A decision without an instant (no sample yet) is already ``no_go`` and never expires."""
    return expires_at is not None and now >= expires_at


@dataclass(frozen=True, slots=True)
class DecisionView:
    """A decision as a reader may see it: fresh, or turned into a stale ``no_go``."""

    verdict: Verdict
    expires_at: datetime | None
    stale: bool
    body: bytes
    gate_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return decision_body(self.verdict, self.expires_at, gate_version=self.gate_version)


def _stale_verdict(verdict: Verdict, reason: str) -> Verdict:
    # The last reasons and criteria stay: they explain what was last seen, and when.
    return dataclasses.replace(verdict, decision=Decision.NO_GO, reasons=(reason, *verdict.reasons))


def _view(
    verdict: Verdict, expires_at: datetime | None, *, stale: bool, version: str | None
) -> DecisionView:
    body = encode_body(decision_body(verdict, expires_at, gate_version=version))
    return DecisionView(verdict, expires_at, stale, body, version)


class PublishedDecision:
    """A continuous decision as published by the scheduler. The only way to read it is
    ``view(now)``, which answers the stale ``no_go`` once it has expired.

    ``expires_at`` is ``evaluated_at + bound``; while the gate's samples cannot be stored
    (``unrecorded_since``), it is counted from the first sample that was not stored, so a
    database outage longer than the bound shows as a stale decision. A decision of a gate
    redefined since (``superseded``, the reason) is served as ``no_go`` from the start."""

    __slots__ = (
        "_bound",
        "_evaluated",
        "_fresh",
        "_interval",
        "_stale",
        "_unrecorded_since",
        "_version",
    )

    def __init__(
        self,
        verdict: Verdict,
        *,
        interval: timedelta,
        bound: timedelta,
        version: str | None = None,
        unrecorded_since: datetime | None = None,
        superseded: str | None = None,
    ) -> None:
        anchor = verdict.evaluated_at
        if anchor is not None and unrecorded_since is not None:
            anchor = min(anchor, unrecorded_since)
        expires_at = anchor + bound if anchor is not None else None
        self._evaluated = verdict
        self._version = version
        self._bound = bound
        if superseded is None:
            self._fresh = _view(verdict, expires_at, stale=False, version=version)
        else:  # judged by a definition that is no longer the gate's: never served as is
            self._fresh = _view(
                _stale_verdict(verdict, superseded), expires_at, stale=True, version=version
            )
        self._interval = interval
        self._unrecorded_since = unrecorded_since
        self._stale: DecisionView | None = None

    @property
    def version(self) -> str | None:
        """The gate version that judged this decision."""
        return self._version

    def superseded(self, reason: str) -> PublishedDecision:
        """This decision, served as ``no_go`` from now on for ``reason`` (the gate was
        redefined since it was judged)."""
        return PublishedDecision(
            self._evaluated,
            interval=self._interval,
            bound=self._bound,
            version=self._version,
            unrecorded_since=self._unrecorded_since,
            superseded=reason,
        )

    @property
    def evaluated(self) -> Verdict:
        """The decision as evaluated, for judging decision changes (never for serving)."""
        return self._evaluated

    def view(self, now: datetime) -> DecisionView:
        fresh = self._fresh
        if not is_expired(fresh.expires_at, now):
            return fresh
        if self._stale is None:  # the same once expired: built once, on the first stale read
            verdict = fresh.verdict
            assert verdict.evaluated_at is not None and fresh.expires_at is not None
            reason = stale_reason(
                verdict.evaluated_at,
                fresh.expires_at,
                self._interval,
                unrecorded_since=self._unrecorded_since,
            )
            self._stale = _view(
                _stale_verdict(verdict, reason),
                fresh.expires_at,
                stale=True,
                version=self._version,
            )
        return self._stale


def current_check_body(
    body: Mapping[str, Any], now: datetime, *, interval: timedelta | None = None
) -> dict[str, Any]:
    """A running check's stored decision body as a reader may see it at ``now``: once its
    ``expires_at`` has passed, ``no_go`` with the stale reason first."""
    current = dict(body)
    expires_at = _instant(body.get("expires_at"))
    evaluated_at = _instant(body.get("evaluated_at"))
    if evaluated_at is None:  # no sample yet: the body is already no_go
        return current
    if expires_at is None:  # judged, but nothing says until when: never trusted as it is
        reason = f"stale: last evaluated {iso(evaluated_at)}, and no expiry was recorded"
    elif is_expired(expires_at, now):
        reason = stale_reason(evaluated_at, expires_at, interval)
    else:
        return current
    reasons = [str(r) for r in body.get("reasons") or []]
    current["decision"] = Decision.NO_GO.value
    current["reasons"] = [reason, *reasons]
    return current


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
