"""The console's templates (``templates/``), autoescaped, and its two static files."""

from __future__ import annotations

from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, Response

from broker.console.guard import secured

_ENVIRONMENT = Environment(
    loader=PackageLoader("broker.console", "templates"),
    # Every value a template prints is escaped (HTML and the inline SVG alike); nothing in
    # the console marks text safe.
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def instant(text: str | None) -> str:
    """An instant as the broker writes it (``2026-12-07T11:23:57.619655+00:00``), shown to
    the second: ``2026-12-07 11:23:57 UTC``."""
    if not text:
        return ""
    if text.endswith("+00:00") and len(text) >= 19:
        return f"{text[:10]} {text[11:19]} UTC"
    return text


_ENVIRONMENT.filters["instant"] = instant


def page(template: str, status: int = 200, **context: Any) -> Response:
    body = _ENVIRONMENT.get_template(template).render(**context)
    return secured(HTMLResponse(body, status_code=status))


def _static(name: str) -> bytes:
    return (resources.files("broker.console") / "static" / name).read_bytes()


#: Read once at import: the stylesheet, the editor's script and the icon, served from the broker's
#: own origin (the CSP allows nothing else).
STATIC = {
    "console.css": (_static("console.css"), "text/css; charset=utf-8"),
    "console.js": (_static("console.js"), "text/javascript; charset=utf-8"),
    "favicon.svg": (_static("favicon.svg"), "image/svg+xml"),
}
