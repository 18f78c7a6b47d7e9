"""Helpers shared by test folders: the repository root, and servers a test needs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_binary(name: str, *candidates: str) -> str:
    """Path of a server binary the test needs: skip locally when absent, fail in CI."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate)
        if found:
            return found
    message = f"{name} is not installed (apt-get install {name})"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so this must not be skipped")
    pytest.skip(message)
