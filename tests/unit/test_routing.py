"""What the broker answers when no endpoint takes a request, on both of its request paths:
the guest endpoints on plain ASGI (``broker/api/lean.py``) and Starlette for the rest.

Driven through the application ``create_app`` builds, without its lifespan: none of these
answers reaches the database or the HSM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from broker.api.openapi import SPECIFICATION
from broker.app import create_app
from broker.settings import Settings

EXAMPLE_PARAMETERS = {
    "name": "disk-key",
    "token_id": "0123456789abcdef",
    "access_key_id": "KBABCDEFGHIJKLMNOPQR",
    "version": "1",
}
UNEXPECTED = ("GET", "PUT", "POST", "DELETE", "PATCH", "TRACE")


def _documented() -> dict[str, set[str]]:
    """Each documented path, with its parameters filled in, and its methods."""
    return {
        path.format(**EXAMPLE_PARAMETERS): {method.upper() for method in item}
        for path, item in SPECIFICATION["paths"].items()
    }


def _allowed(methods: set[str]) -> str:
    """What ``Allow`` must say: the documented methods, HEAD with GET, and OPTIONS."""
    implied = {"HEAD"} if "GET" in methods else set()
    return ", ".join(sorted(methods | implied | {"OPTIONS"}))


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(Settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://broker") as http:
        yield http


def _assert_problem(answer: httpx.Response, status: int, kind: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    document = answer.json()
    assert document["type"] == f"https://keybroker.dev/problems/{kind}"
    assert document["status"] == status
    assert document["request_id"] == answer.headers["x-request-id"]


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/nope/",
        "/v1",
        "/v1/keys//release",  # a guest path with an empty name
        "/v1/keys/a/b/release",
        "/v1/challenge/",  # a trailing slash is another path, not a redirect
        "/v1/admin/keys/",
        "/v1/admin/keys/disk-key/nope",
        "/v2/challenge",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "OPTIONS", "PATCH"])
async def test_a_path_no_endpoint_has_is_a_404_problem(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    answer = await client.request(method, path)
    _assert_problem(answer, 404, "not-found")
    # The same words for every path: nothing the client sent is echoed back.
    assert answer.json()["detail"] == (
        "no endpoint has this path; the API is described at /v1/openapi.json"
    )
    assert "allow" not in answer.headers


@pytest.mark.parametrize(("path", "methods"), sorted(_documented().items()))
async def test_a_method_a_path_lacks_is_a_405_problem_naming_every_method_it_has(
    client: httpx.AsyncClient, path: str, methods: set[str]
) -> None:
    for method in sorted(set(UNEXPECTED) - methods - {"HEAD"}):
        answer = await client.request(method, path)
        _assert_problem(answer, 405, "method-not-allowed")
        assert answer.headers["allow"] == _allowed(methods), (method, path)


@pytest.mark.parametrize(("path", "methods"), sorted(_documented().items()))
async def test_options_on_a_path_is_204_with_allow_and_no_body(
    client: httpx.AsyncClient, path: str, methods: set[str]
) -> None:
    answer = await client.options(path)  # no credentials, on admin paths too
    assert answer.status_code == 204
    assert answer.headers["allow"] == _allowed(methods)
    assert answer.content == b""
    # RFC 9110 §8.6: no Content-Length on a 204; and no body, so no Content-Type.
    assert "content-length" not in answer.headers
    assert "content-type" not in answer.headers
    assert answer.headers["x-request-id"]


async def test_head_on_a_guest_path_is_a_405_and_on_a_get_path_is_answered(
    client: httpx.AsyncClient,
) -> None:
    refused = await client.head("/v1/challenge")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "OPTIONS, POST"
    assert (await client.head("/healthz")).status_code == 200
