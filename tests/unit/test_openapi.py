"""The served OpenAPI document describes exactly the routes the application has, and each
of its constraints is exactly the rule the broker applies: a schema looser than the broker
makes a client's valid request a 400, a stricter one refuses what the broker accepts.

Patterns are ECMA-262 (JSON Schema 2020-12 §6.3.3), where ``$`` ends the input; Python's
``$`` would also match before a final newline, so they are compared here as full matches
of the text between their anchors.
"""

from __future__ import annotations

import asyncio
import base64
import re
import string
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.routing import Route

from broker.admin.service import TOKEN_NAME
from broker.api import guest
from broker.api.body import decode_base64
from broker.api.kbs import PREFIX as KBS_PREFIX
from broker.api.openapi import SPECIFICATION
from broker.app import create_app
from broker.console.guard import PREFIX as CONSOLE_PREFIX
from broker.errors import BadRequest
from broker.names import MAX_VERSION, checked_name, parse_kbs_path
from broker.settings import Settings
from hsm.custody import MAX_SECRET_BYTES, MIN_SECRET_BYTES
from hsm.errors import PublicKeyInvalid
from hsm.jwe import Exposure
from hsm.pubkey import b64url, from_jwk

SCHEMAS: dict[str, Any] = SPECIFICATION["components"]["schemas"]


def ecma_matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` as a JSON Schema validator reads it."""
    assert pattern.startswith("^"), pattern
    assert pattern.endswith("$"), pattern
    return re.fullmatch(pattern[1:-1], text) is not None


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in SPECIFICATION["paths"].items()
        for method, operation in item.items()
    ]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        _, _, kind, name = node["$ref"].split("/")
        node = SPECIFICATION["components"][kind][name]
    return node


def test_every_route_is_documented_and_nothing_else() -> None:
    """Except Trustee's KBS protocol under ``/kbs/v0``, whose contract is Trustee's own
    OpenAPI document (docs/kbs.md; ``tests/integration/test_kbs.py`` holds the answers to it),
    and the KMS endpoint, whose contract is AWS's KMS service model (docs/kms.md;
    ``tests/integration/test_kms.py`` drives it with boto3), and the web console's HTML pages
    under ``/console`` (docs/console.md; ``tests/integration/test_console.py``)."""
    settings = Settings()
    app = create_app(settings)
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        and not route.path.startswith(KBS_PREFIX)
        and route.path != settings.kms_path
        and not (route.path == CONSOLE_PREFIX or route.path.startswith(f"{CONSOLE_PREFIX}/"))
        for method in (route.methods or set()) - {"HEAD"}
    } | {(route.path, route.method.lower()) for route in guest.ROUTES}
    documented = {(path, method) for path, method, _ in _operations()}
    assert routes == documented


def test_every_reference_resolves() -> None:
    document = SPECIFICATION
    components = document["components"]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                _, _, kind, name = ref.split("/")
                assert ref.startswith("#/components/"), ref
                assert name in components[kind], ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert document["openapi"] == "3.1.0"


@pytest.mark.parametrize(("path", "method", "operation"), _operations())
def test_every_answer_documents_its_headers(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    for status, response in operation["responses"].items():
        headers = _resolve(response)["headers"]
        assert headers["X-Request-Id"] == {"$ref": "#/components/headers/RequestId"}, status
        # RFC 6750 §3: a 401 always challenges for a bearer token.
        assert ("WWW-Authenticate" in headers) == (status == "401"), status
        # /readyz's 503 is its readiness answer, not a refusal to retry.
        retried = status == "429" or (status == "503" and path != "/readyz")
        assert ("Retry-After" in headers) == retried, status
    if "security" in operation:
        assert "401" in operation["responses"]


def test_a_challenge_header_is_what_the_broker_sends() -> None:
    from broker.api.problem import BEARER_CHALLENGE, INVALID_TOKEN_CHALLENGE

    header = SPECIFICATION["components"]["headers"]["WwwAuthenticate"]
    assert header["schema"]["enum"] == [BEARER_CHALLENGE.decode(), INVALID_TOKEN_CHALLENGE.decode()]


# --- names --------------------------------------------------------------------------------

NAME = SCHEMAS["Name"]


def _name_allowed(text: str) -> bool:
    try:
        checked_name(text, "key")
    except BadRequest:
        return False
    return True


def _schema_admits_name(text: str) -> bool:
    return NAME["minLength"] <= len(text) <= NAME["maxLength"] and ecma_matches(
        NAME["pattern"], text
    )


NAMES = st.text(alphabet=string.ascii_letters + string.digits + "._-/ é\x00\n", max_size=140)


@given(NAMES)
@example("a" * 128)
@example("a" * 129)
@example("-a")
@example(".a")
@example("0")
@example("")
@example("Disk-key")
@example("disk-key\n")
@example("a" * 127 + "\n")
def test_the_name_pattern_is_the_broker_name_rule(text: str) -> None:
    assert _schema_admits_name(text) == _name_allowed(text)


def test_every_name_in_a_path_or_a_body_is_the_name_schema() -> None:
    parameters = SPECIFICATION["components"]["parameters"]
    assert parameters["KeyName"]["schema"] == {"$ref": "#/components/schemas/Name"}
    assert parameters["PolicyName"]["schema"] == {"$ref": "#/components/schemas/Name"}
    for schema in ("KeyCreateRequest", "BindRequest"):
        members = SCHEMAS[schema]["properties"]
        named = members.get("name") or members["policy"]
        assert named == {"$ref": "#/components/schemas/Name"}


# --- base64 -------------------------------------------------------------------------------


def _decoded(text: str) -> bytes | None:
    try:
        return decode_base64(text, "x")
    except BadRequest:
        return None


BASE64_TEXTS = st.text(alphabet="ABab09+/-_= \n\t.", max_size=24) | st.binary(max_size=40).map(
    lambda raw: base64.b64encode(raw).decode()
)


@given(BASE64_TEXTS)
@example("AA=")
@example("AAA==")
@example("A")
@example("AAAA=")
@example("")
def test_the_base64_pattern_admits_exactly_what_is_decoded(text: str) -> None:
    assert ecma_matches(SCHEMAS["Base64"]["pattern"], text) == (_decoded(text) is not None)


def _schema_admits_secret(text: str) -> bool:
    secret = SCHEMAS["Secret"]
    return len(text) >= secret["minLength"] and ecma_matches(secret["pattern"], text)


def _secret_accepted(text: str) -> bool:
    decoded = _decoded(text)
    return decoded is not None and MIN_SECRET_BYTES <= len(decoded) <= MAX_SECRET_BYTES


@given(
    st.sampled_from([1, 2, 3, 8190, 8191, 8192, 8193, 8194, 8195]).flatmap(
        lambda size: st.tuples(st.binary(min_size=size, max_size=size), st.booleans())
    )
)
def test_the_secret_pattern_admits_exactly_the_secrets_that_can_be_sealed(
    case: tuple[bytes, bool],
) -> None:
    raw, padded = case
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(raw).decode()
        text = text if padded else text.rstrip("=")
        assert _schema_admits_secret(text) == _secret_accepted(text), (len(raw), text[-4:])


@given(BASE64_TEXTS)
def test_the_secret_pattern_is_the_base64_pattern_within_its_bounds(text: str) -> None:
    assert _schema_admits_secret(text) == _secret_accepted(text)


def test_generated_secrets_have_the_bounds_the_hsm_has() -> None:
    length = SCHEMAS["GenerateLength"]
    assert (length["minimum"], length["maximum"]) == (MIN_SECRET_BYTES, MAX_SECRET_BYTES)
    assert SCHEMAS["Key"]["properties"]["secret_length"]["maximum"] == MAX_SECRET_BYTES


# --- the tee key --------------------------------------------------------------------------

MODULUS = SCHEMAS["RsaJwk"]["properties"]["n"]["pattern"]


def _jwk_accepted(n: str) -> bool:
    try:
        from_jwk({"kty": "RSA", "n": n, "e": "AQAB"})
    except PublicKeyInvalid:
        return False
    return True


@given(
    st.sampled_from([383, 384, 385, 511, 512, 513]).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)
    ),
    st.sampled_from(["", "A", "g", "=", "AA"]),
)
def test_the_modulus_pattern_admits_exactly_the_moduli_the_broker_accepts(
    modulus: bytes, suffix: str
) -> None:
    # Moduli of every size near the two accepted ones, odd or even, with or without a
    # leading zero byte; then spoiled by a character more.
    for text in (b64url(modulus), b64url(modulus) + suffix):
        assert ecma_matches(MODULUS, text) == _jwk_accepted(text), (len(modulus), text[-3:])


@pytest.mark.parametrize("bits", [3072, 4096])
def test_a_real_key_matches_the_pattern(bits: int) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = rsa.generate_private_key(65537, bits).public_key().public_numbers()
    n = b64url(numbers.n.to_bytes(bits // 8, "big"))
    assert ecma_matches(MODULUS, n)
    assert _jwk_accepted(n)


# --- everything else the broker bounds ------------------------------------------------------


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=130))
@example("ops laptop")
@example("a" * 128)
@example("a" * 129)
@example("é")
def test_the_token_name_pattern_is_the_broker_token_name_rule(text: str) -> None:
    pattern = SCHEMAS["TokenCreateRequest"]["properties"]["name"]["pattern"]
    assert ecma_matches(pattern, text) == (TOKEN_NAME.fullmatch(text) is not None)


def test_policy_versions_have_the_bounds_the_database_has() -> None:
    bound = SCHEMAS["BindRequest"]["properties"]["version"]
    assert (bound["minimum"], bound["maximum"]) == (1, MAX_VERSION)
    (version,) = [
        p
        for p in SPECIFICATION["paths"]["/v1/admin/policies/{name}"]["get"]["parameters"]
        if p.get("name") == "version"
    ]
    assert (version["schema"]["minimum"], version["schema"]["maximum"]) == (1, MAX_VERSION)


def test_collateral_is_bounded_as_the_guest_endpoint_bounds_it() -> None:
    collateral = SCHEMAS["AttestRequest"]["properties"]["collateral"]
    assert collateral["maxProperties"] == guest.MAX_COLLATERAL_ITEMS


def test_the_request_id_header_is_the_id_the_broker_makes() -> None:
    """The broker's own id, whatever the client sent (broker/api/middleware.py)."""
    pattern = SPECIFICATION["components"]["headers"]["RequestId"]["schema"]["pattern"]
    app = create_app(Settings())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for client_id in (b"abc-123", b"0123456789abcdef", b"bad id"):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/challenge",
            "headers": [(b"x-request-id", client_id)],
            "client": ("192.0.2.1", 1),
        }
        sent.clear()
        asyncio.run(app(scope, receive, send))
        answered = dict(sent[0]["headers"])[b"x-request-id"].decode()
        assert ecma_matches(pattern, answered)
        assert answered != client_id.decode()


# --- KBS settings of a key ---------------------------------------------------------------------

KBS_PATH = SCHEMAS["KbsPath"]


def _kbs_path_allowed(text: str) -> bool:
    try:
        parse_kbs_path(text)
    except BadRequest:
        return False
    return True


@given(st.text(alphabet=string.ascii_letters + string.digits + "._-/ é\x00\n", max_size=400))
@example("a/b/c")
@example("a/b/c\n")
@example(".a/b/c")
@example("a/b/c/d")
@example("/".join(["a" * 128] * 3))
@example("/".join(["a" * 129, "b", "c"]))
def test_the_kbs_path_pattern_is_the_broker_kbs_path_rule(text: str) -> None:
    admitted = len(text) <= KBS_PATH["maxLength"] and ecma_matches(KBS_PATH["pattern"], text)
    assert admitted == _kbs_path_allowed(text)


def test_the_exposures_are_the_hsms() -> None:
    assert SCHEMAS["Exposure"]["enum"] == [exposure.value for exposure in Exposure]
