from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

import broker
from broker import errors
from broker.api.problem import PROBLEM_BASE, problem_response, status_for


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.BadRequest("x"), 400),
        (errors.TokenInvalid("x"), 401),
        (errors.TokenUnverified("x", "token-signature"), 401),
        (errors.NonceUnrecognised("x", "nonce-mac"), 409),
        (errors.PolicyDenied("x", []), 403),
        (errors.KeyNotFound("x"), 404),
        (errors.NonceReplayed("x"), 409),
        (errors.NonceExpired("x"), 409),
        (errors.SignatureInvalid("x"), 422),
        (errors.CertificateExpired("x"), 422),
        (errors.BindingMismatch("x"), 422),
        (errors.RequestTimeout("x"), 408),
        (errors.RateLimited("x"), 429),
        (errors.RequestHeadTooLarge("x"), 431),
        (errors.Overloaded("x"), 503),
        (errors.DatabaseUnavailable("x"), 503),
        (errors.HsmUnavailable("x"), 503),
        (errors.CollateralUnavailable("x"), 503),
        (errors.InternalError("x"), 500),
    ],
)
def test_every_error_has_its_status(error: errors.KeybrokerError, status: int) -> None:
    assert status_for(error) == status


def test_problem_document_shape() -> None:
    denied = errors.PolicyDenied("policy denied", [{"path": "debug", "found": True}])
    response = problem_response(denied, "req-1")
    assert response.status_code == 403
    assert response.media_type == "application/problem+json"
    body = json.loads(bytes(response.body))
    assert body == {
        "type": PROBLEM_BASE + "policy-denied",
        "title": "Forbidden",
        "status": 403,
        "detail": "policy denied",
        "request_id": "req-1",
        "reasons": [{"path": "debug", "found": True}],
    }


def test_evidence_errors_name_the_verifier_type_and_unavailable_says_retry() -> None:
    body = json.loads(bytes(problem_response(errors.TcbMismatch("t"), None).body))
    assert body["evidence_error"] == "tcb-mismatch"
    assert problem_response(errors.DatabaseUnavailable("d"), None).headers["retry-after"] == "5"


def test_a_policy_document_that_is_not_a_policy_is_refused_content() -> None:
    # The API's schema admits any object as a document; what the policy language refuses is
    # 422, like evidence that does not verify.
    assert status_for(errors.PolicyError("x")) == 422
    body = json.loads(bytes(problem_response(errors.PolicyError("x"), None).body))
    assert body["title"] == "Unprocessable Content"


def test_a_401_without_a_token_challenges_without_an_error_code() -> None:
    response = problem_response(errors.TokenMissing("Authorization: Bearer <x> is required"), "r")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="keybroker"'


@pytest.mark.parametrize(
    "error", [errors.TokenInvalid("token expired"), errors.TokenInvalid("admin token is malformed")]
)
def test_a_401_for_a_refused_token_says_invalid_token(error: errors.KeybrokerError) -> None:
    response = problem_response(error, "r")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="keybroker", error="invalid_token"'


@pytest.mark.parametrize(
    "error", [errors.BadRequest("x"), errors.Forbidden("x"), errors.DatabaseUnavailable("x")]
)
def test_only_a_401_challenges(error: errors.KeybrokerError) -> None:
    assert "www-authenticate" not in problem_response(error, "r").headers


def test_a_detail_that_repeats_a_lone_surrogate_is_still_a_problem_document() -> None:
    # JSON may carry "\ud800" and the body reader accepts it; UTF-8 cannot: the problem
    # writes it back as its escape instead of failing (which was a bare 500).
    response = problem_response(errors.BadRequest("collateral '\ud800' must be base64 text"), "r")
    assert response.status_code == 400
    assert bytes(response.body).isascii()
    assert json.loads(bytes(response.body))["detail"] == "collateral '\ud800' must be base64 text"


def test_unrecognised_refusals_keep_their_parents_problem_types() -> None:
    """Audited in aggregate, answered exactly as before."""
    assert errors.NonceUnrecognised("x", "nonce-mac").type == "nonce-unknown"
    assert errors.TokenUnverified("x", "token-key").type == "token-invalid"
    assert isinstance(errors.NonceUnrecognised("x", "nonce-mac"), errors.NonceUnknown)
    assert isinstance(errors.TokenUnverified("x", "token-key"), errors.TokenInvalid)
    response = problem_response(errors.TokenUnverified("x", "token-signature"), "r")
    assert response.headers["www-authenticate"] == 'Bearer realm="keybroker", error="invalid_token"'


# --- one spelling: kebab-case, the former snake_case ones aliased until 0.3.0 ----------------

KEBAB = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def _error_classes() -> list[type[errors.KeybrokerError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.KeybrokerError)
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_every_problem_type_is_kebab_case(cls: type[errors.KeybrokerError]) -> None:
    assert KEBAB.fullmatch(cls.type), cls.type


def test_the_spelling_rule_refuses_snake_case() -> None:
    assert KEBAB.fullmatch("signature-invalid")
    assert not KEBAB.fullmatch("signature_invalid")
    assert not KEBAB.fullmatch("Signature-Invalid")


def test_each_former_type_is_the_snake_case_of_a_type_and_no_type_itself() -> None:
    types = {cls.type for cls in _error_classes()}
    assert set(errors.FORMER_TYPES) <= types
    for new, former in errors.FORMER_TYPES.items():
        assert former == new.replace("-", "_") != new
    assert not set(errors.FORMER_TYPES.values()) & types


def test_a_renamed_type_carries_its_former_uri() -> None:
    body = json.loads(bytes(problem_response(errors.SignatureInvalid("s"), "r").body))
    assert body["type"] == PROBLEM_BASE + "signature-invalid"
    assert body["deprecated_type"] == PROBLEM_BASE + "signature_invalid"
    assert body["evidence_error"] == "signature-invalid"
    unavailable = json.loads(bytes(problem_response(errors.CollateralUnavailable("c"), None).body))
    assert unavailable["deprecated_type"] == PROBLEM_BASE + "collateral_unavailable"
    assert "evidence_error" in unavailable


@pytest.mark.parametrize(
    "error", [errors.MalformedEvidence("m"), errors.NonceReplayed("n"), errors.BadRequest("b")]
)
def test_a_type_that_kept_its_spelling_has_no_alias(error: errors.KeybrokerError) -> None:
    assert "deprecated_type" not in json.loads(bytes(problem_response(error, None).body))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def test_the_aliases_are_gone_by_the_release_that_drops_them() -> None:
    """Fails the build of FORMER_TYPES_REMOVED_IN (or later) while aliases remain."""
    released = _version(broker.__version__) >= _version(errors.FORMER_TYPES_REMOVED_IN)
    assert not (released and errors.FORMER_TYPES), "remove FORMER_TYPES and deprecated_type"


def test_the_api_doc_tabulates_every_former_type() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs/api.md").read_text()
    table = text.split("| type | former type (alias until ")[1]
    assert table.startswith(errors.FORMER_TYPES_REMOVED_IN + ") |")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| `([a-z0-9_]+)` \|$", table, re.MULTILINE)
    assert dict(rows) == errors.FORMER_TYPES
    assert f"until {errors.FORMER_TYPES_REMOVED_IN}" in text
