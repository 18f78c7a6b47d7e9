"""The FastAPI application: ``create_app`` wires settings, database, gates and loops."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import structlog
import swagger_ui_bundle
from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.checks.runner import CheckRunner
from app.coordination.bus import bus_for
from app.coordination.leases import LeaseHolder
from app.core import problems
from app.core.auth import TokenAuthenticator
from app.core.clock import Clock, SystemClock
from app.core.db import Database
from app.core.logging import redactor
from app.core.settings import Settings, load_settings, validate_bind
from app.core.version import package_version
from app.gates.catalog import (
    GateCatalog,
    LoadedGate,
    ProbeBuilder,
    build_probe,
    install_sighup_reload,
)
from app.gates.read_lane import DecisionReadLane
from app.gates.samples import SampleStore
from app.gates.scheduler import GateScheduler
from app.gates.service import follow_gate_changes, load_api_gates
from app.integrations import flagger as integrations
from app.integrations import github, gitlab
from app.integrations.callbacks import CallbackOutbox, Sender
from app.integrations.forges import Doors, load_integrations
from app.observability import metrics
from app.observability import outbox as outbox_module
from app.observability.notify import Notifier
from app.observability.outbox import NotificationOutbox
from app.routes import api_router, public_router
from app.web import status_page

log = structlog.get_logger(__name__)

# Swagger UI's files come from the installed ``swagger-ui-bundle-v2`` package, so ``/docs``
# works with no internet (a CDN is often unreachable from where gonogo runs). Only the files
# the page loads are served.
SWAGGER_UI_DIR = Path(swagger_ui_bundle.swagger_ui_path)
DOCS_ASSETS_PATH = "/docs/assets"
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def _probe_secrets(loaded: LoadedGate | None) -> list[str]:
    """Values of the environment variables a gate's probes and webhooks name (``*_env``)."""
    if loaded is None:
        return []
    names = [
        value
        for config in loaded.gate.probes.values()
        for key, value in config.model_dump().items()
        if key.endswith("_env") and isinstance(value, str)
    ]
    names.extend(n.secret_env for n in loaded.gate.notify if n.secret_env)
    return [os.environ.get(name, "") for name in names]


def _reload_on_sighup(catalog: GateCatalog, stack: AsyncExitStack) -> None:
    try:
        uninstall = install_sighup_reload(catalog, asyncio.get_running_loop())
    except (NotImplementedError, RuntimeError, ValueError) as error:
        # Signals reach only the main thread's loop (an app embedded elsewhere).
        log.warning(
            "gate reload on SIGHUP unavailable; use POST /api/v1/admin/reload", error=str(error)
        )
        return
    stack.callback(uninstall)


def _door_senders(doors: Doors, clock: Clock) -> dict[str, Sender]:
    """The outbox's sender for each configured front door (GitHub, GitLab)."""
    senders: dict[str, Sender] = {}
    if doors.github is not None:
        senders[github.DOOR] = github.GitHubApp(doors.github, clock=clock)
    if doors.gitlab is not None:
        senders[gitlab.DOOR] = gitlab.GitLabApprovals(doors.gitlab)
    return senders


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    probe_builder: ProbeBuilder | None = None,
) -> FastAPI:
    """The gonogo service. ``probe_builder`` lets tests hand the catalog fake probes."""
    settings = settings or load_settings()
    validate_bind(settings)
    clock = clock or SystemClock()
    redactor.add(settings.secret_values())
    doors = load_integrations(settings.integrations_file, env_policy=settings.env_policy())
    redactor.add(doors.secrets())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        async with AsyncExitStack() as stack:
            db = Database(settings.database_url)
            stack.push_async_callback(db.dispose)
            catalog = GateCatalog(
                gates_dir=settings.gates_dir,
                probe_builder=probe_builder or build_probe,
                env_policy=settings.env_policy(),
            )
            stack.push_async_callback(catalog.aclose)
            catalog.subscribe(lambda _name, loaded: redactor.add(_probe_secrets(loaded)))
            catalog.load_files()
            if settings.gates_dir is not None:
                _reload_on_sighup(catalog, stack)
            for loaded in catalog.all():
                redactor.add(_probe_secrets(loaded))
            async with db.session() as session:
                for problem in await load_api_gates(session, catalog):
                    log.error("stored gate not loaded", problem=problem)
            notifier = Notifier(clock=clock)
            store = SampleStore(db, clock=clock, retention=settings.sample_retention)
            # One lease holder and one bus per process; every subscription is made before
            # the bus starts listening.
            # On PostgreSQL the lease holder has its own pool: renewals never queue behind
            # sample writes for a connection, so a busy replica does not lose its leases.
            # SQLite is one process with one writer at a time: one engine.
            lease_db = db
            if db.engine.dialect.name == "postgresql":
                lease_db = Database(settings.database_url)
                stack.push_async_callback(lease_db.dispose)
            # Leases live on the database's clock, real time: the holder renews on real
            # time too (an injected test clock only drives the sampling loops).
            leases = LeaseHolder(
                lease_db, owner=settings.replica_id, ttl=settings.lease_ttl, clock=SystemClock()
            )
            bus = bus_for(db, clock=SystemClock())  # its keepalive is about a real connection
            # Notifications are written in the transaction of the change they announce and
            # sent from there by whichever replica gets to them (docs/operations.md).
            # A row whose sender died is sent by another replica once its claim lapses:
            # about a lease TTL, and never shorter than two attempts.
            # Like the lease holder, the outbox works in real time: its claims and retries
            # are about other processes (receivers, replicas), not about the gates' time.
            outbox = NotificationOutbox(
                db,
                clock=SystemClock(),
                replica=settings.replica_id,
                claim_ttl=max(
                    2 * outbox_module.ATTEMPT_TIMEOUT_S, settings.lease_ttl.total_seconds()
                ),
            )
            scheduler = GateScheduler(
                catalog,
                notifier=notifier,
                sink=store,
                clock=clock,
                leases=leases,
                bus=bus,
                stored=store,
                outbox=outbox,
            )
            changes = follow_gate_changes(bus, db, catalog, origin=settings.replica_id)
            runner = CheckRunner(
                db,
                catalog,
                notifier=notifier,
                clock=clock,
                leases=leases,
                bus=bus,
                outbox=outbox,
            )
            state.db, state.catalog, state.notifier = db, catalog, notifier
            state.scheduler, state.checks, state.samples = scheduler, runner, store
            state.leases, state.bus, state.outbox = leases, bus, outbox
            metrics.watch_gates_loaded(lambda: len(catalog.all()))

            await notifier.start()
            stack.push_async_callback(notifier.stop)
            await outbox.start()
            stack.push_async_callback(outbox.stop)
            await store.start()
            stack.push_async_callback(store.stop)
            await bus.start()
            stack.push_async_callback(bus.stop)
            stack.push_async_callback(changes.stop)
            # Stopped after the loops (the stack unwinds in reverse): a graceful stop
            # gives every lease back at once, so another replica takes over within a
            # renew period.
            stack.push_async_callback(leases.stop)
            await scheduler.start()
            stack.push_async_callback(scheduler.stop)
            await leases.step()  # the first claim, so the loops start with the app
            leases.start()
            await runner.start()
            stack.push_async_callback(runner.stop)
            callbacks = CallbackOutbox(
                db, clock=clock, senders=_door_senders(doors, clock), public_url=settings.public_url
            )
            runner.end_listeners.append(callbacks.check_ended)
            state.callbacks = callbacks
            await callbacks.start()
            stack.push_async_callback(callbacks.stop)
            state.gates_loaded = True
            if settings.open_access:
                log.warning(
                    "no GONOGO_TOKENS: the API is open to anyone who can reach"
                    f" {settings.host}:{settings.port} (loopback only)"
                )
            log.info("gonogo started", gates=len(catalog.all()))
            yield
            state.gates_loaded = False

    app = FastAPI(
        title="gonogo",
        summary="Automated go/no-go gates for deployments",
        version=package_version(),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.authenticator = TokenAuthenticator(settings.tokens)
    app.state.gates_loaded = False
    app.state.doors = doors
    problems.install(app)
    # Added last, so outermost: the hottest read skips the rest of the stack.
    app.add_middleware(DecisionReadLane, state=app.state)
    app.include_router(api_router)
    app.include_router(public_router)
    app.include_router(status_page.router)
    app.include_router(integrations.router)
    app.include_router(github.router)
    app.include_router(gitlab.router)
    _install_docs(app)
    return app


def _install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI for ``/openapi.json``, every asset served by gonogo itself."""

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_PATH}/favicon-32x32.png",
            # Swagger UI's default validator badge is an image from an outside host.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(DOCS_ASSETS_PATH + "/{name}", include_in_schema=False)
    async def swagger_asset(name: str) -> FileResponse:
        media_type = DOCS_ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail=f"no docs asset {name!r}")
        return FileResponse(
            SWAGGER_UI_DIR / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )
