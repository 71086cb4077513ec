"""The served OpenAPI document describes exactly the routes the application has."""

from __future__ import annotations

from starlette.routing import Route

from broker.api import guest
from broker.api.openapi import specification
from broker.app import create_app
from broker.settings import Settings


def test_every_route_is_documented_and_nothing_else() -> None:
    app = create_app(Settings())
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    } | {(route.path, route.method.lower()) for route in guest.ROUTES}
    documented = {
        (path, method) for path, item in specification()["paths"].items() for method in item
    }
    assert routes == documented


def test_every_reference_resolves() -> None:
    document = specification()
    schemas = document["components"]["schemas"]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.startswith("#/components/schemas/")
                assert ref.rsplit("/", 1)[1] in schemas, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert document["openapi"] == "3.1.0"
