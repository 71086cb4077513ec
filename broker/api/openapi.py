"""Serves the OpenAPI 3.1 description of the API (``broker/api/openapi.json``)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@cache
def specification() -> dict[str, Any]:
    text = resources.files("broker.api").joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


async def document(request: Request) -> Response:
    return JSONResponse(specification())
