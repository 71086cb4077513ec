"""Serves the OpenAPI 3.1 description of the API (``broker/api/openapi.json``)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

#: The document, read at import.
SPECIFICATION: dict[str, Any] = json.loads(
    resources.files("broker.api").joinpath("openapi.json").read_text("utf-8")
)


async def document(request: Request) -> Response:
    return JSONResponse(SPECIFICATION)
