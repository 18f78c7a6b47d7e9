"""``gonogo demo``: gonogo and a simulated service, one command, nothing to set up."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import typer

from app.demo.service import DemoUrls, Pace, run_demo


async def _serve_gonogo(gates_dir: Path, data_dir: Path, sock: socket.socket) -> None:
    """gonogo itself, as ``gonogo serve`` runs it, on a fresh SQLite database."""
    import uvicorn

    from app.core.migrate import upgrade_database
    from app.core.settings import load_settings
    from app.main import create_app

    port = int(sock.getsockname()[1])
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{data_dir / 'gonogo-demo.db'}",
        gates_dir=gates_dir,
        host="127.0.0.1",
        port=port,
        tokens="",  # the demo is open, and bound to loopback only
        log_format="console",
    )
    await upgrade_database(settings.database_url)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", access_log=False)
    )
    await server.serve(sockets=[sock])


def _launcher() -> str:
    """How the person reading this runs gonogo: under ``uv run`` (which sets ``UV``) the
    command is in the project's environment, not on their PATH."""
    return "uv run gonogo" if os.environ.get("UV") else "gonogo"


def _announce(urls: DemoUrls, pace: Pace) -> None:
    typer.echo("gonogo demo: a simulated checkout service drifting through")
    typer.echo(
        "  healthy (go) -> error rate above 1 % (no_go) -> availability below 95 % (rollback)"
    )
    typer.echo("  -> recovery, over and over.")
    if pace.clamped:
        typer.echo(
            f"  (--speed {pace.requested_speed:g}: gates sample at most once a second,"
            f" so the story runs {pace.time_scale:g}x)"
        )
    typer.echo("")
    typer.echo(f"  status page   {urls.status_page}/")
    typer.echo(f"  API           {urls.api}/gates/{urls.gate}/decision")
    typer.echo(f"  simulated     {urls.service}/health")
    typer.echo("")
    typer.echo("  try, in another terminal:")
    typer.echo(f"    {urls.check_command(launcher=_launcher())}")
    typer.echo("")
    typer.echo("Ctrl-C stops it; nothing is left behind.")


def demo(
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="port for gonogo"),
    speed: float = typer.Option(1.0, "--speed", help="how fast the story runs (2 = twice as fast)"),
) -> None:
    """Serve gonogo judging a built-in simulated service: go -> no_go -> rollback in a minute."""
    if not speed > 0:
        raise typer.BadParameter("must be a positive number", param_hint="--speed")
    try:
        asyncio.run(
            run_demo(port=port, speed=speed, serve_gonogo=_serve_gonogo, announce=_announce)
        )
    except OSError as error:
        typer.echo(f"gonogo demo: cannot listen on 127.0.0.1:{port}: {error.strerror}", err=True)
        raise typer.Exit(3) from None
    except KeyboardInterrupt:
        typer.echo("stopped")


def register(cli: typer.Typer) -> None:
    cli.command("demo")(demo)
