"""The installed package's version, as ``gonogo --version``, ``/openapi.json`` and
``gonogo_build_info`` report it."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def package_version() -> str:
    try:
        return version("gonogo")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"
