"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.errors import KeybrokerError, Unavailable
from broker.runtime import Runtime

READINESS_TIMEOUT_S = 3.0


async def healthz(request: Request) -> Response:
    """Alive: the process answers. Says nothing about its dependencies."""
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Ready: the database answers and the HSM token is usable; else 503 with the reason."""
    runtime: Runtime = request.app.state.runtime
    checks: dict[str, str] = {}
    for name, check in (("database", runtime.db.check), ("hsm", runtime.check_hsm)):
        try:
            await asyncio.wait_for(check(), READINESS_TIMEOUT_S)
            checks[name] = "ok"
        except Unavailable as exc:
            checks[name] = exc.detail
        except KeybrokerError as exc:  # e.g. the token holds no KEK: not ready either
            checks[name] = f"{exc.type}: {exc.detail}"
        except TimeoutError:
            checks[name] = f"no answer within {READINESS_TIMEOUT_S} s"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
