"""structlog configuration: JSON lines in production, a console renderer on a terminal.

A request id is bound per request through contextvars and appears on every line logged while
serving it. As a last line of defence, values under keys that name secrets are replaced by
``***`` before rendering; the first line is never to pass secrets to a logger at all.

The access log writes three lines per release, so a line must be cheap: in JSON it is written
directly (:func:`access`); other lines remember the redaction decision per key name and are
rendered by orjson (docs/performance.md).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from broker.timeutil import iso, utcnow

_SECRET_KEYS = frozenset(
    {"pin", "password", "secret", "authorization", "token", "bearer", "dsn", "database_url"}
)
_SECRET_SUFFIXES = ("_pin", "_password", "_secret", "_token", "_dsn")
_MAX_REMEMBERED_KEYS = 4096
_names_secret: dict[str, bool] = {}


def _names_a_secret(key: str) -> bool:
    known = _names_secret.get(key)
    if known is None:
        lowered = key.lower()
        known = lowered in _SECRET_KEYS or lowered.endswith(_SECRET_SUFFIXES)
        if len(_names_secret) < _MAX_REMEMBERED_KEYS:  # key names come from code: few
            _names_secret[key] = known
    return known


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if _names_a_secret(key):
            event[key] = "***"
    return event


def _render_json(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
    """One JSON object per line; what JSON cannot carry is written as its repr."""
    try:
        return orjson.dumps(event, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # text orjson refuses (a lone surrogate, from a client) or a huge int
        return json.dumps(event, default=repr, ensure_ascii=True, separators=(",", ":"))


class StderrLogger:
    """Writes each line to the ``sys.stderr`` of the moment, not the one seen at start: it
    may be replaced (test capture, daemonising), and a logger holding the old, closed stream
    would fail."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = msg


def configure(log_format: str = "auto", level: str = "info") -> None:
    global _direct_access  # noqa: PLW0603 - one process-wide logging configuration
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    _direct_access = not use_console and threshold <= logging.INFO
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else _render_json
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=_stderr_logger,
        # Not cached: a cached logger keeps the configuration of its first use, and the CLI
        # and tests configure more than once. The one hot line, the access log, does not go
        # through structlog (:func:`access`).
        cache_logger_on_first_use=False,
    )


def _stderr_logger(*_: Any) -> StderrLogger:
    return StderrLogger()


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


_direct_access = False
_access_log = get_logger("keybroker.http")


def access(
    method: str | None,
    route: str,
    status: int,
    ms: float,
    request_id: str,
    *,
    client_request_id: str | None = None,
) -> None:
    """The access-log line of one request, three per release; ``client_request_id`` is the
    client's own ``X-Request-Id`` when it sent a sane one (``broker/api/middleware.py``).

    In JSON at level info it is written directly, the same line structlog's chain would
    write (request id, fields, event, level, UTC timestamp) at a fifth of the cost: none of
    its fields can name a secret, and no other context is bound while serving a request.
    Otherwise it goes through structlog like every other line."""
    if not _direct_access:
        _access_log.info("request", method=method, route=route, status=status, ms=ms)
        return
    ids = {"request_id": request_id}
    if client_request_id is not None:
        ids["client_request_id"] = client_request_id
    line = orjson.dumps(
        {
            **ids,
            "method": method,
            "route": route,
            "status": status,
            "ms": ms,
            "event": "request",
            "level": "info",
            "timestamp": iso(utcnow(), zulu=True),
        }
    )
    stream = sys.stderr
    stream.write(line.decode() + "\n")
    stream.flush()
