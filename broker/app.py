"""The Starlette application factory and its lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker import console
from broker.admin.service import AdminService, destroy_due_keys, destroy_expired_wrapping_keys
from broker.admin.sessions import ConsoleSessions
from broker.api import admin, guest, health, kbs, kms, openapi, routing
from broker.api.clientcert import ClientRoles
from broker.api.headers import request_id
from broker.api.lean import GuestRoutes
from broker.api.limits import STATE_KEY, Admission
from broker.api.middleware import Edge
from broker.api.problem import problem_response
from broker.errors import InternalError, KeybrokerError
from broker.hsmcalls import hsm_errors
from broker.logs import get_logger
from broker.metrics import Children, HsmPoolMetrics, Metrics, process_stopped
from broker.readiness import Readiness
from broker.release.collateral import CollateralResolver, default_lookups
from broker.release.kms import KmsService
from broker.release.policies import PolicyCache
from broker.release.service import ReleaseService
from broker.release.sessions import KbsSessions
from broker.runtime import Locate, Runtime, configured_location
from broker.settings import Settings
from broker.store import access_keys, challenges
from broker.store.release import PostgresReleaseStore
from broker.timeutil import utcnow

log = get_logger("keybroker.app")


def create_app(
    settings: Settings, runtime: Runtime | None = None, locate: Locate = configured_location
) -> Edge:
    """Build the application. With ``runtime`` given, the caller owns its life cycle;
    without, the lifespan starts one on the database and token ``locate`` finds."""
    metrics = Metrics.create()
    admission = Admission(settings, metrics.refused)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Admission]]:
        owned = runtime is None
        app.state.runtime = (
            runtime if runtime is not None else await Runtime.start(settings, locate)
        )
        # One client for the vendor collateral services (AMD KDS, Intel PCS): connection
        # reuse and one timeout for every fetch.
        collateral_http = httpx.AsyncClient(
            timeout=settings.collateral_timeout_seconds,
            headers={"User-Agent": "keybroker"},
        )
        pool = app.state.runtime.custody.pool
        pool.observe(HsmPoolMetrics(metrics, pool.threads))
        lookups = Children(metrics.collateral_lookups)
        app.state.release = ReleaseService(
            app.state.runtime,
            metrics,
            CollateralResolver(
                app.state.runtime.db,
                default_lookups(
                    settings,
                    collateral_http,
                    lambda key, result: lookups(key.tee, key.kind, result).inc(),
                ),
            ),
            PolicyCache(),
            PostgresReleaseStore(app.state.runtime.db),
        )
        app.state.admin = AdminService(app.state.runtime)
        with hsm_errors():
            console_key = app.state.runtime.custody.console_session_key()
        app.state.console_sessions = ConsoleSessions(
            console_key, timedelta(seconds=settings.console_session_seconds)
        )
        app.state.readiness = Readiness(app.state.runtime)
        app.state.kms = KmsService(
            app.state.release,
            app.state.runtime.db,
            skew=timedelta(seconds=settings.kms_clock_skew_seconds),
            account=settings.kms_account_id,
        )
        purger = asyncio.create_task(_purge_expired_challenges(app.state.runtime))
        shredder = asyncio.create_task(_destroy_due_keys(app.state.runtime))
        unauthenticated = app.state.release.unauthenticated
        flusher = asyncio.create_task(unauthenticated.run())
        log.info("broker_started", host=settings.host, port=settings.port)
        try:
            # The connection limits (broker/api/guard.py) read their counts from the state
            # the server keeps for this lifespan.
            yield {STATE_KEY: admission}
        finally:
            for task in (purger, shredder):
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            # The last window's aggregate records, before the database goes.
            unauthenticated.stop()
            try:
                await asyncio.wait_for(flusher, SHUTDOWN_FLUSH_SECONDS)
            except TimeoutError:
                log.error("unauthenticated_flush_timed_out", seconds=SHUTDOWN_FLUSH_SECONDS)
            await collateral_http.aclose()
            if owned:
                await app.state.runtime.stop()
            process_stopped()

    routes = [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/v1/jwks", guest.jwks, methods=["GET"]),
        Route("/v1/openapi.json", openapi.document, methods=["GET"]),
        *admin.ROUTES,
        *kbs.ROUTES,
        *kms.routes(settings.kms_path),
        *console.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            KeybrokerError: _keybroker_error,
            Exception: _unexpected_error,
            404: routing.starlette_unrouted,
            405: routing.starlette_unrouted,
        },
    )
    # A path with a trailing slash is another path (404), not a redirect to this one: the
    # API has exactly the paths its OpenAPI document lists.
    app.router.redirect_slashes = False
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.client_roles = ClientRoles.from_settings(settings)
    app.state.kbs_sessions = KbsSessions(settings.kbs_sessions)
    return Edge(app, GuestRoutes(guest.ROUTES, app.state), metrics)


PURGE_INTERVAL_SECONDS = 300.0
#: How often a broker looks for keys whose deletion came due: a key outlives its
#: destroy_after by at most this (plus the time the database is unavailable).
DELETION_SWEEP_SECONDS = 60.0
#: How long shutdown waits for the last aggregate records of unrecognised requests.
SHUTDOWN_FLUSH_SECONDS = 15.0


async def _purge_expired_challenges(runtime: Runtime) -> None:
    """Keep the challenges table to the nonces that can still matter, and the KMS signatures
    table to the signatures whose window is open (every 5 minutes)."""
    while True:
        try:
            removed = await challenges.purge(runtime.db, utcnow())
            if removed:
                log.info("challenges_purged", removed=removed)
            removed = await access_keys.purge_signatures(runtime.db, utcnow())
            if removed:
                log.info("kms_signatures_purged", removed=removed)
        except KeybrokerError as exc:  # the database being down is reported by /readyz
            log.warning("challenges_purge_failed", error=exc.type)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


async def _destroy_due_keys(runtime: Runtime) -> None:
    """Destroy the keys whose scheduled deletion came due and the import wrapping keys that
    expired (every minute; every broker process runs this, and each is destroyed once)."""
    while True:
        try:
            now = utcnow()
            destroyed = await destroy_due_keys(runtime.db, now)
            if destroyed:
                log.info("keys_destroyed", keys=destroyed)
            expired = await destroy_expired_wrapping_keys(runtime.db, runtime.custody, now)
            if expired:
                log.info("import_wrapping_keys_destroyed", wrapping_keys=expired)
        except KeybrokerError as exc:
            log.warning("key_destruction_failed", error=exc.type)
        await asyncio.sleep(DELETION_SWEEP_SECONDS)


async def _keybroker_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, KeybrokerError):  # registered for KeybrokerError only
        return await _unexpected_error(request, exc)
    return problem_response(exc, request_id(request))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected_error", error_type=type(exc).__name__, exc_info=exc)
    internal = InternalError("internal error; the broker log has the details under this request id")
    return problem_response(internal, request_id(request))
