"""SigV4 verification (broker/release/sigv4.py) against botocore's signer, an independent
implementation: what botocore signs verifies, the canonical request is botocore's byte for
byte, and each malformed, stale or altered request is refused with its exact reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broker.errors import SignatureIncomplete, SignatureRefused
from broker.release import sigv4
from broker.release.sigv4 import ReceivedRequest, SignedRequest

AT = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
SKEW = timedelta(seconds=300)
KEY_ID = "KBTESTACCESSKEY0001"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
BODY = json.dumps({"KeyId": "alias/enclave-data-key", "Plaintext": "c2VjcmV0"}).encode()


def botocore_signed(
    monkeypatch: pytest.MonkeyPatch,
    *,
    path: str = "/",
    query: str = "",
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
    region: str = "eu-west-1",
) -> ReceivedRequest:
    """The request as a broker receives it after botocore signed it at ``AT``."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: AT.replace(tzinfo=None))
    url = f"http://kms.test:18700{path}" + (f"?{query}" if query else "")
    sent = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "TrentService.Encrypt",
        **(headers or {}),
    }
    request = AWSRequest(method="POST", url=url, data=body, headers=sent)
    SigV4Auth(Credentials(KEY_ID, SECRET), "kms", region).add_auth(request)
    prepared = request.prepare()
    raw_path, _, raw_query = prepared.url.removeprefix("http://kms.test:18700").partition("?")
    received = [("host", "kms.test:18700")]
    received += [(name.lower(), value) for name, value in prepared.headers.items()]
    return ReceivedRequest(
        "POST", raw_path.encode(), raw_query.encode(), tuple(received), prepared.body or b""
    )


def check(request: ReceivedRequest, secret: str = SECRET, now: datetime = AT) -> SignedRequest:
    signed = sigv4.parse(request.headers, now, SKEW)
    sigv4.verify(signed, request, secret.encode())
    return signed


def with_header(request: ReceivedRequest, name: str, value: str) -> ReceivedRequest:
    headers = tuple((n, value if n == name else v) for n, v in request.headers)
    return ReceivedRequest(
        request.method, request.raw_path, request.query_string, headers, request.body
    )


def without_header(request: ReceivedRequest, name: str) -> tuple[tuple[str, str], ...]:
    return tuple((n, v) for n, v in request.headers if n != name)


def refused(kind: type[SignatureRefused], call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(kind) as caught:
        call()
    assert type(caught.value) is kind
    assert str(caught.value) == message


# --- what botocore signs verifies ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/", ""),
        ("/kms/eu", ""),
        ("/a%20b/c~d", ""),
        ("/", "b=2&a=1&a=0"),
        ("/", "name=x%2Fy&sp%20ace=%E2%9C%93"),
    ],
)
def test_a_botocore_signature_verifies(
    monkeypatch: pytest.MonkeyPatch, path: str, query: str
) -> None:
    request = botocore_signed(monkeypatch, path=path, query=query)
    signed = check(request)
    assert (signed.access_key_id, signed.region, signed.at) == (KEY_ID, "eu-west-1", AT)
    assert signed.scope == "20260301/eu-west-1/kms/aws4_request"
    assert signed.replay_key() == signed.signature


def test_the_canonical_request_is_botocores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Byte for byte, with extra signed headers whose values need trimming and collapsing."""
    extra = {"X-Amz-Meta": "  two   spaces  inside "}
    request = botocore_signed(monkeypatch, headers=extra, query="z=1&a=%20")
    signed = sigv4.parse(request.headers, AT, SKEW)
    assert "x-amz-meta" in signed.signed_headers
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: AT.replace(tzinfo=None))
    again = AWSRequest(
        method="POST",
        url="http://kms.test:18700/?z=1&a=%20",
        data=BODY,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "TrentService.Encrypt",
            **extra,
        },
    )
    signer = SigV4Auth(Credentials(KEY_ID, SECRET), "kms", "eu-west-1")
    signer.add_auth(again)
    del again.headers["Authorization"]  # what botocore signed: every header it had then
    expected = signer.canonical_request(again)
    assert sigv4.canonical_request(signed, request) == expected
    check(request)


def test_repeated_headers_are_joined_with_commas() -> None:
    """AWS: a header sent twice is one canonical line, its values joined by ',' in order."""
    signed = SignedRequest(KEY_ID, "20260301", "eu-west-1", ("host", "x-a"), bytes(32), AT)
    request = ReceivedRequest(
        "POST", b"/", b"", (("host", "h"), ("x-a", " 1  2 "), ("x-a", "3")), b""
    )
    lines = sigv4.canonical_request(signed, request).split("\n")
    assert lines[3:5] == ["host:h", "x-a:1 2,3"]


def test_uri_and_query_canonical_forms() -> None:
    assert sigv4.canonical_uri(b"") == "/"
    assert sigv4.canonical_uri(b"/a%20b") == "/a%2520b"  # every service but S3 encodes twice
    assert sigv4.canonical_query(b"") == ""
    assert sigv4.canonical_query(b"b=2&a=%7E&a=+") == "a=%2B&a=~&b=2"


# --- refusals ------------------------------------------------------------------------------


def test_another_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    request = botocore_signed(monkeypatch)
    refused(
        SignatureRefused,
        lambda: check(request, secret=SECRET[:-1] + "X"),
        "The request signature we calculated does not match the signature you provided",
    )


@pytest.mark.parametrize(
    "alter",
    [
        lambda r: ReceivedRequest(r.method, r.raw_path, r.query_string, r.headers, r.body + b" "),
        lambda r: ReceivedRequest("PUT", r.raw_path, r.query_string, r.headers, r.body),
        lambda r: ReceivedRequest(r.method, b"/other", r.query_string, r.headers, r.body),
        lambda r: ReceivedRequest(r.method, r.raw_path, b"a=1", r.headers, r.body),
        lambda r: with_header(r, "x-amz-target", "TrentService.Decrypt"),
        lambda r: with_header(r, "host", "kms.other:18700"),
    ],
    ids=["body", "method", "path", "query", "operation", "host"],
)
def test_an_altered_request_is_refused(monkeypatch: pytest.MonkeyPatch, alter: object) -> None:
    request = botocore_signed(monkeypatch)
    assert callable(alter)
    refused(
        SignatureRefused,
        lambda: check(alter(request)),
        "The request signature we calculated does not match the signature you provided",
    )


def test_a_content_hash_that_is_not_the_bodys_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    request = botocore_signed(monkeypatch, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    refused(
        SignatureRefused,
        lambda: check(request),
        "X-Amz-Content-SHA256 is not the SHA-256 of the request body",
    )


@pytest.mark.parametrize("offset", [timedelta(seconds=301), timedelta(seconds=-301)])
def test_a_request_time_outside_the_skew_is_refused(
    monkeypatch: pytest.MonkeyPatch, offset: timedelta
) -> None:
    request = botocore_signed(monkeypatch)
    now = AT + offset
    refused(
        SignatureRefused,
        lambda: check(request, now=now),
        "Signature expired: the request time 20260301T120005Z is more than 300 s from the "
        f"broker's clock {now.strftime('%Y%m%dT%H%M%SZ')}",
    )
    check(request, now=AT + offset / 301 * 300)  # at the bound it is accepted


AUTH = (
    "AWS4-HMAC-SHA256 Credential=KBTESTACCESSKEY0001/20260301/eu-west-1/kms/aws4_request, "
    "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "ab" * 32
)


@pytest.mark.parametrize(
    ("authorization", "kind", "message"),
    [
        (
            None,
            SignatureIncomplete,
            "the request carries no Authorization header: KMS requests are signed with AWS "
            "Signature Version 4",
        ),
        (
            "AWS4-HMAC-SHA1 Credential=a, SignedHeaders=b, Signature=c",
            SignatureIncomplete,
            "Authorization must be 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., "
            "Signature=<64 hex digits>'",
        ),
        (
            AUTH.replace("Signature=" + "ab" * 32, "Signature=" + "ab" * 31),
            SignatureIncomplete,
            "Authorization must be 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., "
            "Signature=<64 hex digits>'",
        ),
        (
            AUTH.replace("/kms/aws4_request", "/aws4_request"),
            SignatureIncomplete,
            "Credential must be <access key id>/<date>/<region>/kms/aws4_request",
        ),
        (
            AUTH.replace("KBTESTACCESSKEY0001", "kb-lower"),
            SignatureIncomplete,
            "Credential names no well-formed access key id",
        ),
        (
            AUTH.replace("/20260301/", "/2026031/"),
            SignatureIncomplete,
            "Credential scope date or region is malformed",
        ),
        (
            AUTH.replace("/eu-west-1/", "/EU_WEST/"),
            SignatureIncomplete,
            "Credential scope date or region is malformed",
        ),
        (
            AUTH.replace("/kms/", "/s3/"),
            SignatureRefused,
            "Credential scope is for service 's3', not kms (aws4_request)",
        ),
        (
            AUTH.replace("host;x-amz-date;x-amz-target", "x-amz-date;host;x-amz-target"),
            SignatureIncomplete,
            "SignedHeaders must be lower-case names, sorted, each once",
        ),
        (
            AUTH.replace("host;x-amz-date;x-amz-target", "host;host;x-amz-date;x-amz-target"),
            SignatureIncomplete,
            "SignedHeaders must be lower-case names, sorted, each once",
        ),
        (
            AUTH.replace("host;x-amz-date;x-amz-target", "host;x-amz-date"),
            SignatureIncomplete,
            "SignedHeaders must include x-amz-target",
        ),
        (
            AUTH.replace("host;x-amz-date;x-amz-target", "content-type;x-amz-date"),
            SignatureIncomplete,
            "SignedHeaders must include host, x-amz-target",
        ),
    ],
)
def test_a_malformed_authorization_is_refused(
    authorization: str | None, kind: type[SignatureRefused], message: str
) -> None:
    headers = [("host", "h"), ("x-amz-date", "20260301T120005Z")]
    if authorization is not None:
        headers.append(("authorization", authorization))
    refused(kind, lambda: sigv4.parse(headers, AT, SKEW), message)


@pytest.mark.parametrize(
    ("dates", "kind", "message"),
    [
        ([], SignatureIncomplete, "the request must carry exactly one X-Amz-Date header"),
        (
            ["20260301T120005Z"] * 2,
            SignatureIncomplete,
            "the request must carry exactly one X-Amz-Date header",
        ),
        (["2026-03-01T12:00:05Z"], SignatureIncomplete, "X-Amz-Date must be yyyymmddThhmmssZ"),
        (
            ["20260302T000001Z"],
            SignatureRefused,
            "X-Amz-Date is not on the Credential scope's date",
        ),
    ],
)
def test_a_bad_request_time_is_refused(
    dates: list[str], kind: type[SignatureRefused], message: str
) -> None:
    headers = [("authorization", AUTH), *(("x-amz-date", date) for date in dates)]
    refused(kind, lambda: sigv4.parse(headers, AT, SKEW), message)


def test_two_authorization_headers_are_refused() -> None:
    headers = [("authorization", AUTH), ("authorization", AUTH)]
    refused(
        SignatureIncomplete,
        lambda: sigv4.parse(headers, AT, SKEW),
        "the request carries more than one Authorization header",
    )


def test_a_signed_header_missing_from_the_request_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = botocore_signed(monkeypatch)
    signed = sigv4.parse(request.headers, AT, SKEW)
    stripped = ReceivedRequest(
        request.method,
        request.raw_path,
        request.query_string,
        without_header(request, "x-amz-target"),
        request.body,
    )
    refused(
        SignatureIncomplete,
        lambda: sigv4.verify(signed, stripped, SECRET.encode()),
        "signed header x-amz-target is not in the request",
    )
