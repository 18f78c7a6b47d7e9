"""``gonogo serve`` and ``gonogo migrate``."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from app.core.settings import Settings, SettingsError, load_settings, validate_bind


def _fail(message: str) -> typer.Exit:
    typer.echo(f"gonogo: {message}", err=True)
    return typer.Exit(1)


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as error:
        raise _fail(str(error)) from None
    return settings


def _migrate(settings: Settings) -> None:
    from app.core.migrate import upgrade_database

    try:
        asyncio.run(upgrade_database(settings.database_url))
    except Exception as error:
        # Never print the URL: it may hold the database password.
        raise _fail(
            f"cannot migrate the database (GONOGO_DATABASE_URL): {type(error).__name__}:"
            f" {_redacted(str(error), settings)}"
        ) from None


def _redacted(text: str, settings: Settings) -> str:
    for secret in settings.secret_values():
        text = text.replace(secret, "[redacted]")
    return text.splitlines()[0] if text else text


def _hold_sqlite(settings: Settings) -> None:
    """One ``gonogo serve`` per SQLite file; a second one exits 1 naming the file."""
    from app.coordination.single_process import DatabaseInUse, hold_sqlite_database

    try:
        hold_sqlite_database(settings.database_url)
    except DatabaseInUse as error:
        raise _fail(str(error)) from None


def _check_gates_dir(settings: Settings) -> None:
    """Refuse to start on an invalid gate directory, before binding the port."""
    from app.gates.catalog import GateCatalog, GateDirInvalid

    if settings.gates_dir is None:
        return
    if not settings.gates_dir.is_dir():
        raise _fail(f"GONOGO_GATES_DIR {settings.gates_dir} is not a directory")

    async def load() -> None:
        catalog = GateCatalog(gates_dir=settings.gates_dir, env_policy=settings.env_policy())
        try:
            catalog.load_files()
        finally:
            await catalog.aclose()

    try:
        asyncio.run(load())
    except GateDirInvalid as invalid:
        typer.echo(f"gonogo: {invalid}", err=True)
        raise typer.Exit(1) from None


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: a port that is taken ends
    ``gonogo serve`` with one line and exit 1, before it logs that it started."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        raise _fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not a taken port: TIME_WAIT
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise _fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def serve(
    host: Annotated[
        str | None,
        typer.Option("--host", help="address to bind (default: GONOGO_HOST, else 127.0.0.1)"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="port to bind (default: GONOGO_PORT, else 8080)"
        ),
    ] = None,
    gates_dir: Annotated[
        Path | None,
        typer.Option(
            "--gates-dir", help="directory of gate files (default: GONOGO_GATES_DIR, else none)"
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="SQLAlchemy URL (default: GONOGO_DATABASE_URL, else sqlite+aiosqlite:///./gonogo.db)",
        ),
    ] = None,
) -> None:
    """Run the service; migrates the database first."""
    import uvicorn

    from app.core.logging import configure_logging
    from app.main import create_app

    settings = _settings(host=host, port=port, gates_dir=gates_dir, database_url=database_url)
    try:
        validate_bind(settings)
    except SettingsError as error:
        raise _fail(str(error)) from None
    configure_logging(
        settings.log_format, secrets=settings.secret_values(), replica=settings.replica_id
    )
    _hold_sqlite(settings)
    _check_gates_dir(settings)
    sock = _listen(settings.host, settings.port)
    _migrate(settings)
    try:
        app = create_app(settings)
    except SettingsError as error:  # e.g. a located problem in the integrations file
        sock.close()
        raise _fail(str(error)) from None
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    with sock:
        server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(1)


def migrate(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="SQLAlchemy URL (default: GONOGO_DATABASE_URL, else sqlite+aiosqlite:///./gonogo.db)",
        ),
    ] = None,
) -> None:
    """Apply the database migrations."""
    settings = _settings(database_url=database_url)
    _migrate(settings)
    typer.echo("database is up to date")


def register(cli: typer.Typer) -> None:
    cli.command("serve")(serve)
    cli.command("migrate")(migrate)
