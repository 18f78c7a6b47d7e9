"""Fixtures shared by every test folder (keep this small; folders add their own)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    """A fixed instant: tests never read the clock for what they judge."""
    return T0
