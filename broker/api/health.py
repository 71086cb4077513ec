"""Liveness, readiness and metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.errors import DatabaseUnavailable
from broker.metrics import collateral_exposition, exposition
from broker.readiness import Readiness
from broker.timeutil import utcnow


async def healthz(request: Request) -> Response:
    """Alive: the process answers. Says nothing about its dependencies."""
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Ready: the database answers and the HSM token is usable; else 503 with the reason."""
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.checks()
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    """Every worker's metrics summed (``broker/metrics.py``), and the collateral store's
    state; without the database, the latter is left out and the rest still answered."""
    text = exposition(request.app.state.metrics)
    try:
        counts = await request.app.state.release.collateral.stored(utcnow())
    except DatabaseUnavailable:
        counts = None
    if counts is not None:
        text += collateral_exposition(counts)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
