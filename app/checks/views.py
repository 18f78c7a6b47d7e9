"""The check body (``GET /checks/{id}``) and its audit events, from their rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from app.core.db import CANCELLED, RUNNING, CheckRow, EventRow, SignoffRow
from app.gates.freshness import current_check_body
from gates.engine import Decision
from probes.timefmt import iso

log = structlog.get_logger(__name__)


def signoff_body(row: SignoffRow) -> dict[str, Any]:
    return {
        "signoff": row.signoff,
        "signed_by": row.signed_by,
        "comment": row.comment,
        "signed_at": iso(row.signed_at),
    }


def conclusion(row: CheckRow) -> str:
    """The check's answer in one word: ``running`` while it is being judged, then its final
    decision (``go``, ``no_go``, ``rollback``) or ``cancelled``. A caller that must tell
    "still judging" from "ended no_go" reads this rather than ``decision``, which a running
    check also carries (its latest sample's)."""
    if row.state == RUNNING:
        return RUNNING
    if row.state == CANCELLED:
        return CANCELLED
    return row.decision or Decision.NO_GO.value


def check_body(row: CheckRow, signoffs: Sequence[SignoffRow], *, now: datetime) -> dict[str, Any]:
    """The decision body of the check's latest (or final) decision, plus the check. A
    running check's latest decision is read at ``now``: once expired it is a stale
    ``no_go``; a final check is history and keeps its decision."""
    body = current_check_body(row.verdict, now) if row.state == RUNNING else dict(row.verdict)
    if row.state == CANCELLED:
        body["decision"] = None
    body.update(
        {
            "id": row.id,
            "state": row.state,
            "conclusion": conclusion(row),
            "version": row.version,
            "gate_version": row.gate_version,
            "environment": row.environment,
            "stage": row.stage,
            "vars": dict(row.vars),
            "metadata": dict(row.meta),
            "created_at": iso(row.created_at),
            "deadline": iso(row.deadline),
            "decided_at": iso(row.decided_at),
            "decided_by": row.decided_by,
            "deciding_samples": list(row.deciding_samples),
            "signoffs": [signoff_body(s) for s in signoffs],
        }
    )
    return body


def event_body(row: EventRow) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "at": iso(row.at), "actor": row.actor, "data": row.data}
