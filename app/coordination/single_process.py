"""One ``gonogo serve`` per SQLite database.

SQLite is the single-process embedded database: two processes sampling the same file
would sample every gate twice and race to end the same checks. The first ``gonogo
serve`` takes an exclusive OS lock on a file beside the database (``<database>.lock``)
and keeps it for its whole life; the operating system drops it when the process ends,
however it ends, so a crashed server never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from probes.errors import GonogoError


class DatabaseInUse(GonogoError):
    """Another process serves this SQLite database."""


# Held for the life of the process: closing the file would drop the lock.
_held: dict[Path, int] = {}


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL or an in-memory database."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser().resolve()


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def hold_sqlite_database(database_url: str) -> Path | None:
    """Take this process's lock on the SQLite database of ``database_url`` (nothing for
    PostgreSQL); returns the database file. Raises ``DatabaseInUse`` naming the file when
    another process holds it."""
    database = sqlite_file(database_url)
    if database is None or database in _held:
        return database
    path = lock_path(database)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise DatabaseInUse(f"cannot create the lock file {path}: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_pid(descriptor)
        os.close(descriptor)
        by = f" (process {holder})" if holder else ""
        raise DatabaseInUse(
            f"the SQLite database {database} is already served by another gonogo"
            f"{by}; SQLite allows one gonogo serve per database file: stop the other one,"
            " or run several replicas on PostgreSQL"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    _held[database] = descriptor
    return database


def _read_pid(descriptor: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(descriptor, 32, 0).decode("ascii").strip()
        if text.isdigit():
            return text
    return ""
