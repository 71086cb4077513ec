"""AWS Signature Version 4 verified over the request as it was received.

The AWS SDKs sign a KMS request with ``Authorization: AWS4-HMAC-SHA256 Credential=<access
key id>/<yyyymmdd>/<region>/kms/aws4_request, SignedHeaders=<h1;h2;...>, Signature=<hex>``
and ``X-Amz-Date: <yyyymmddThhmmssZ>`` (AWS General Reference, "Signature Version 4 signing
process"). The server recomputes the signature from what it received:

1. the canonical request: method, the URI-encoded path, the canonical query string (names
   and values URI-encoded, sorted), one ``name:value`` line per signed header (names lower
   case, values trimmed with inner runs of spaces collapsed, repeated headers joined by
   ``,``), the signed header list, and the hex SHA-256 of the body as received;
2. the string to sign: ``AWS4-HMAC-SHA256``, the request time, the credential scope, and the
   hex SHA-256 of the canonical request;
3. the signing key: HMAC-SHA256 chained from ``"AWS4" + secret`` over the date, the region,
   ``kms`` and ``aws4_request``; the signature is HMAC-SHA256 of the string to sign under it.

The signed header set is the client's (boto3 signs four headers, the JavaScript SDK nine):
it is read from ``SignedHeaders``, never assumed, but it must cover ``host``, ``x-amz-date``
and ``x-amz-target`` (the operation), so that no signed request can be replayed to another
host, at another time or as another operation. The body is always covered by its hash; an
``X-Amz-Content-SHA256`` header must equal it (``UNSIGNED-PAYLOAD`` is refused). The request
time must be within ``skew`` of the broker's clock; a signature seen before within that window
is a replay, which the caller refuses with what :meth:`SignedRequest.replay_key` returns.

Nothing here logs or keeps the secret; comparisons of signatures are constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from broker.errors import SignatureIncomplete, SignatureRefused
from broker.timeutil import iso_basic

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "kms"
TERMINATOR = "aws4_request"
#: Headers every signature must cover (lower case).
REQUIRED_SIGNED = frozenset({"host", "x-amz-date", "x-amz-target"})

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 +Credential=([^,\s]+), *SignedHeaders=([^,\s]+), *Signature=([0-9a-f]{64})"
)
# Access key ids: the broker issues KB + 18 upper-case letters and digits (AWS: AKIA...).
_ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")
_DATE = re.compile(r"[0-9]{8}")
_REGION = re.compile(r"[a-z0-9-]{1,64}")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"  # parsing only; written by timeutil.iso_basic
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
# RFC 3986 unreserved characters: never percent-encoded in canonical forms.
_UNRESERVED = "-_.~"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a request's ``Authorization`` and ``X-Amz-Date`` say, checked for form and time."""

    access_key_id: str
    date: str
    region: str
    signed_headers: tuple[str, ...]
    signature: bytes
    at: datetime
    """The request time the client signed."""

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{SERVICE}/{TERMINATOR}"

    def replay_key(self) -> bytes:
        """What identifies this signature among others: the signature itself (a MAC over the
        whole request, time included)."""
        return self.signature


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """The request as it arrived: the bytes its signature must cover."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: tuple[tuple[str, str], ...]
    """(lower-case name, value) in the order received; repeated names kept."""
    body: bytes

    def header_values(self, name: str) -> list[str]:
        return [value for header, value in self.headers if header == name]


def parse(headers: Iterable[tuple[str, str]], now: datetime, skew: timedelta) -> SignedRequest:
    """The signature's claims, checked for form, scope and time (not yet for truth)."""
    received = list(headers)
    authorizations = [value for name, value in received if name == "authorization"]
    if not authorizations:
        raise SignatureIncomplete(
            "the request carries no Authorization header: KMS requests are signed with AWS "
            "Signature Version 4"
        )
    if len(authorizations) > 1:
        raise SignatureIncomplete("the request carries more than one Authorization header")
    match = _AUTHORIZATION.fullmatch(authorizations[0].strip())
    if match is None:
        raise SignatureIncomplete(
            "Authorization must be 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., "
            "Signature=<64 hex digits>'"
        )
    credential, signed_text, signature = match.groups()
    parts = credential.split("/")
    if len(parts) != 5:
        raise SignatureIncomplete(
            "Credential must be <access key id>/<date>/<region>/kms/aws4_request"
        )
    access_key_id, date, region, service, terminator = parts
    if not _ACCESS_KEY_ID.fullmatch(access_key_id):
        raise SignatureIncomplete("Credential names no well-formed access key id")
    if not _DATE.fullmatch(date) or not _REGION.fullmatch(region):
        raise SignatureIncomplete("Credential scope date or region is malformed")
    if service != SERVICE or terminator != TERMINATOR:
        raise SignatureRefused(
            f"Credential scope is for service {service[:32]!r}, not {SERVICE} ({TERMINATOR})",
            "sigv4-malformed",
        )
    signed = tuple(signed_text.split(";"))
    if list(signed) != sorted(set(signed)) or not all(map(_HEADER_NAME.fullmatch, signed)):
        raise SignatureIncomplete("SignedHeaders must be lower-case names, sorted, each once")
    missing = sorted(REQUIRED_SIGNED - set(signed))
    if missing:
        raise SignatureIncomplete(f"SignedHeaders must include {', '.join(missing)}")
    at = _request_time(received, date)
    if abs(now - at) > skew:
        raise SignatureRefused(
            f"Signature expired: the request time {iso_basic(at)} is more than "
            f"{int(skew.total_seconds())} s from the broker's clock {iso_basic(now)}",
            "sigv4-malformed",
        )
    return SignedRequest(access_key_id, date, region, signed, bytes.fromhex(signature), at)


def _request_time(headers: list[tuple[str, str]], date: str) -> datetime:
    values = [value for name, value in headers if name == "x-amz-date"]
    if len(values) != 1:
        raise SignatureIncomplete("the request must carry exactly one X-Amz-Date header")
    try:
        at = datetime.strptime(values[0].strip(), _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureIncomplete("X-Amz-Date must be yyyymmddThhmmssZ") from None
    if iso_basic(at)[:8] != date:
        raise SignatureRefused(
            "X-Amz-Date is not on the Credential scope's date", "sigv4-malformed"
        )
    return at


def verify(signed: SignedRequest, request: ReceivedRequest, secret: bytes) -> None:
    """Raise ``SignatureRefused`` unless ``signed.signature`` is the signature of ``request``
    under ``secret`` (the access key's secret, as the client holds it)."""
    expected = signature(signed, request, secret)
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureRefused(
            "The request signature we calculated does not match the signature you provided"
        )


def signature(signed: SignedRequest, request: ReceivedRequest, secret: bytes) -> bytes:
    """The SigV4 signature of ``request`` for the scope and headers ``signed`` names."""
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            iso_basic(signed.at),
            signed.scope,
            hashlib.sha256(canonical_request(signed, request).encode("utf-8")).hexdigest(),
        )
    )
    key = _hmac(b"AWS4" + secret, signed.date)
    for part in (signed.region, SERVICE, TERMINATOR):
        key = _hmac(key, part)
    return _hmac(key, string_to_sign)


def canonical_request(signed: SignedRequest, request: ReceivedRequest) -> str:
    body_hash = hashlib.sha256(request.body).hexdigest()
    declared = request.header_values("x-amz-content-sha256")
    if declared and (len(declared) != 1 or declared[0].strip().lower() != body_hash):
        raise SignatureRefused(
            "X-Amz-Content-SHA256 is not the SHA-256 of the request body", "sigv4-malformed"
        )
    lines = []
    for name in signed.signed_headers:
        values = request.header_values(name)
        if not values:
            raise SignatureIncomplete(f"signed header {name} is not in the request")
        lines.append(f"{name}:{','.join(' '.join(value.split()) for value in values)}")
    return "\n".join(
        (
            request.method,
            canonical_uri(request.raw_path),
            canonical_query(request.query_string),
            *lines,
            "",
            ";".join(signed.signed_headers),
            body_hash,
        )
    )


def canonical_uri(raw_path: bytes) -> str:
    """The path as received, URI-encoded once more (every service but S3 double-encodes)."""
    return quote(raw_path.decode("latin-1") or "/", safe="/~")


def canonical_query(query_string: bytes) -> str:
    if not query_string:
        return ""
    pairs = []
    for item in query_string.decode("latin-1").split("&"):
        name, _, value = item.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _encode(text: str) -> str:
    return quote(text, safe=_UNRESERVED)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def received(
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
) -> ReceivedRequest:
    """A :class:`ReceivedRequest` from ASGI's raw header pairs."""
    return ReceivedRequest(
        method,
        raw_path,
        query_string,
        tuple((name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in headers),
        body,
    )


def header_map(request: ReceivedRequest) -> Mapping[str, str]:
    """The first value of each header, by lower-case name."""
    first: dict[str, str] = {}
    for name, value in request.headers:
        first.setdefault(name, value)
    return first
