"""SQLite serves one process: a second ``gonogo serve`` on the same database file refuses
to start, naming the file, and exits 1; once the first has stopped, a new one starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.coordination.single_process import (
    DatabaseInUse,
    hold_sqlite_database,
    lock_path,
    sqlite_file,
)
from tests.support import free_port, server_process

GONOGO = str(Path(sys.executable).with_name("gonogo"))
REFUSE_WITHIN_S = 60


def serve_argv(database: Path) -> list[str]:
    return [
        GONOGO,
        "serve",
        "--port",
        str(free_port()),
        "--database-url",
        f"sqlite+aiosqlite:///{database}",
    ]


def environment() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")},
        "GONOGO_LOG_FORMAT": "console",
    }


def test_a_second_gonogo_serve_on_the_same_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    database = tmp_path / "gonogo.db"
    first = serve_argv(database)
    port = first[first.index("--port") + 1]
    with server_process(
        first, ready_url=f"http://127.0.0.1:{port}/readyz", log_path=tmp_path / "first.log"
    ) as running:
        second = subprocess.run(
            serve_argv(database),
            env=environment(),
            capture_output=True,
            text=True,
            timeout=REFUSE_WITHIN_S,
        )
        assert second.returncode == 1, second.stderr
        assert str(database) in second.stderr
        assert "already served by another gonogo" in second.stderr
        assert f"(process {running.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert running.poll() is None  # the first one keeps serving
    # The lock ends with its process: a new server starts on the same file.
    again = serve_argv(database)
    again_port = again[again.index("--port") + 1]
    with server_process(
        again, ready_url=f"http://127.0.0.1:{again_port}/readyz", log_path=tmp_path / "again.log"
    ):
        pass


def test_the_lock_is_for_sqlite_files_only(tmp_path: Path) -> None:
    assert sqlite_file("postgresql+asyncpg://u:p@db/gonogo") is None
    assert sqlite_file("sqlite+aiosqlite://") is None
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    database = tmp_path / "g.db"
    assert sqlite_file(f"sqlite+aiosqlite:///{database}") == database.resolve()
    assert hold_sqlite_database("postgresql+asyncpg://u:p@db/gonogo") is None


def test_a_lock_file_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "g.db"
    with pytest.raises(DatabaseInUse, match="cannot create the lock file"):
        hold_sqlite_database(f"sqlite+aiosqlite:///{missing}")
    assert lock_path(missing).name == "g.db.lock"
