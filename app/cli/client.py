"""The HTTP client the commands that talk to a gonogo server share (``/api/v1``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

POLL_SECONDS = 5.0  # each long poll returns at once when the check ends
START_ATTEMPTS = 4
# Answers that mean "not now" (a replica restarting, a database outage behind it, a
# gateway between): following a check asks again, for up to RIDE_OUT_SECONDS in a row.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
RIDE_OUT_SECONDS = 300.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0


class ClientError(Exception):
    """Something that ends a command with exit code 3 and a one-line message."""


def problem_text(response: httpx.Response) -> str:
    """An error answer in one line: status, the problem's detail, and each located error."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    text = f"HTTP {response.status_code}: {body.get('detail') or body.get('title', '')}"
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            loc = ".".join(str(p) for p in error.get("loc", []))
            text += f"; {loc}: {error.get('msg')}"
    return text


def _part(value: str) -> str:
    """``value`` as one path segment: a ``/`` or ``?`` typed in an id stays inside it."""
    return quote(value, safe="")


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"the server answered HTTP {response.status_code}, not JSON") from None
    if not isinstance(body, dict):
        raise ClientError(f"the server answered HTTP {response.status_code} with unexpected JSON")
    return body


def _retry_after(response: httpx.Response) -> float:
    """The answer's ``Retry-After`` in seconds (the delta-seconds form), else 0."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


class GonogoClient:
    """One server's checks API, authenticated with ``token`` when one is given."""

    def __init__(
        self, server: str, token: str | None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"User-Agent": "gonogo-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=server.rstrip("/") + "/api/v1",
            headers=headers,
            timeout=httpx.Timeout(10.0, read=POLL_SECONDS + 30),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GonogoClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ClientError(f"cannot reach the server: {type(error).__name__}: {error}") from None
        except httpx.InvalidURL as error:
            raise ClientError(f"bad --server URL: {error}") from None

    def _expect(self, response: httpx.Response, what: str, *ok: int) -> dict[str, Any]:
        if response.status_code not in ok:
            raise ClientError(f"{what} failed: {problem_text(response)}")
        return _body(response)

    def start(self, gate: str, body: dict[str, Any], key: str) -> tuple[dict[str, Any], bool]:
        """Start a check (or find the one ``key`` started); ``True`` when it is new.

        Every attempt sends the same key, so a retried request returns the same check."""
        last = ""
        for attempt in range(START_ATTEMPTS):
            try:
                response = self._http.post(
                    f"/gates/{_part(gate)}/checks", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError as error:
                last = f"cannot reach the server: {type(error).__name__}: {error}"
            except httpx.InvalidURL as error:
                raise ClientError(f"bad --server URL: {error}") from None
            else:
                if response.status_code in (200, 201):
                    return _body(response), response.status_code == 201
                if response.status_code < 500:
                    raise ClientError(f"the server refused the check: {problem_text(response)}")
                last = f"the server failed: {problem_text(response)}"
            time.sleep(min(2**attempt * 0.5, 4.0))  # backoff between start attempts
        raise ClientError(last)

    def get(self, check_id: str, *, wait: float = 0) -> dict[str, Any]:
        params = {"wait": wait} if wait else {}
        response = self._request("GET", f"/checks/{_part(check_id)}", params=params)
        return self._expect(response, "reading the check", 200)

    def poll(
        self,
        check_id: str,
        *,
        wait: float,
        ride_out: float = RIDE_OUT_SECONDS,
        notice: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """``get``, riding out a server that is away for now: unreachable, or answering
        429, 502, 503 or 504. It is asked again with a doubling backoff (or its
        ``Retry-After``, when longer) for up to ``ride_out`` seconds in a row; then the
        last failure is the error. Any other refusal is an error at once."""
        gives_up = time.monotonic() + ride_out
        backoff = FIRST_BACKOFF_SECONDS
        while True:
            params = {"wait": wait} if wait else {}
            try:
                response = self._http.get(f"/checks/{_part(check_id)}", params=params)
            except httpx.TransportError as error:
                failure, delay = f"cannot reach the server: {type(error).__name__}: {error}", 0.0
            except httpx.InvalidURL as error:
                raise ClientError(f"bad --server URL: {error}") from None
            else:
                if response.status_code not in TRANSIENT_STATUSES:
                    return self._expect(response, "reading the check", 200)
                failure = f"reading the check failed: {problem_text(response)}"
                delay = _retry_after(response)
            remaining = gives_up - time.monotonic()
            if remaining <= 0:
                raise ClientError(f"{failure} (asked again for {ride_out:g}s)")
            pause = min(max(delay, backoff), MAX_BACKOFF_SECONDS, remaining)
            if notice is not None:
                notice(f"{failure}; asking again in {pause:.1f}s")
            sleep(pause)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def list(self, *, gate: str | None, state: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if gate is not None:
            params["gate"] = gate
        if state is not None:
            params["state"] = state
        body = self._expect(self._request("GET", "/checks", params=params), "listing checks", 200)
        items = body.get("items")
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    def signoff(self, check_id: str, signoff: str, comment: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"signoff": signoff}
        if comment is not None:
            payload["comment"] = comment
        response = self._request("POST", f"/checks/{_part(check_id)}/signoffs", json=payload)
        return self._expect(response, "the sign-off", 200, 201)

    def decide(self, check_id: str, decision: str, reason: str) -> dict[str, Any]:
        payload = {"decision": decision, "reason": reason}
        response = self._request("POST", f"/checks/{_part(check_id)}/decision", json=payload)
        return self._expect(response, "the decision", 200)

    def cancel(self, check_id: str, reason: str | None) -> dict[str, Any]:
        payload = {"reason": reason} if reason is not None else {}
        response = self._request("POST", f"/checks/{_part(check_id)}/cancel", json=payload)
        return self._expect(response, "cancelling the check", 200)
