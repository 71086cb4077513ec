"""HTTP to the broker with the standard library, TLS verified by a CA or an SPKI pin, and
retries with backoff while the network comes up.

``http.client`` over ``ssl``: nothing else is needed for four JSON requests, and every module
is a file an initramfs must carry. The broker is authenticated in one of three ways:

* ``ca``: the PEM certificates given (and only those) must verify its chain and name;
* ``pins``: the SHA-256 of the SubjectPublicKeyInfo of the certificate it presents must be
  one of the pins (RFC 7469 ``pin-sha256``: standard base64 of 32 bytes); with no ``ca`` the
  chain is not checked, the pin being the stronger statement (as curl's ``--pinnedpubkey``);
* neither, over https: the system's trust store.

A pin is checked right after the handshake, before a byte of the request is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keybroker_guest import __version__
from keybroker_guest.encoding import b64, from_b64
from keybroker_guest.errors import Unreachable, Untrusted, UsageError

#: Longest answer read from the broker: its answers are a few kilobytes.
MAX_ANSWER_BYTES = 1 << 20
#: Statuses that say "not now": retried while the wait lasts.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
#: The longest ``Retry-After`` honoured: a broker (or what poses as one) cannot stall a boot.
MAX_RETRY_AFTER_SECONDS = 30.0
_PIN_BYTES = 32


@dataclass(frozen=True)
class BrokerUrl:
    """The broker's base URL: ``http(s)://host[:port][/prefix]``, nothing else."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, text: str) -> BrokerUrl:
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"broker URL {text!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"broker URL {text!r} is not http(s)://host[:port][/path]")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise UsageError(f"broker URL {text!r} carries a query, fragment or user")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def authenticated(self) -> bool:
        """Whether the channel itself shows that the peer is the broker: TLS, or a loopback
        address (the machine's own). Plain HTTP elsewhere leaves the broker's signature on
        the envelope as the only proof, so its key must then be pinned."""
        return self.scheme == "https" or self.loopback

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"


def parse_pin(text: str) -> bytes:
    """The 32 bytes of an RFC 7469 ``pin-sha256`` (standard base64, padded); ``UsageError``
    for anything else, hex included, with what was expected."""
    try:
        raw = from_b64(text, "pin-sha256")
    except ValueError:
        raw = b""
    if len(raw) != _PIN_BYTES:
        hint = " (it looks like hex)" if len(text) == 2 * _PIN_BYTES else ""
        raise UsageError(
            f"pin-sha256 {text[:80]!r} is not the standard base64 of a SHA-256 digest "
            f"(RFC 7469, 44 characters){hint}"
        )
    return raw


def spki_sha256(certificate_der: bytes) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo of a DER certificate (RFC 7469 §2.4)."""
    public_key = x509.load_der_x509_certificate(certificate_der).public_key()
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


@dataclass(frozen=True)
class TlsTrust:
    """How the broker's TLS certificate is judged (see the module's docstring)."""

    ca_pem: str | None = None
    pins: tuple[bytes, ...] = ()

    def context(self) -> ssl.SSLContext:
        if self.ca_pem is not None:
            try:
                context = ssl.create_default_context(cadata=self.ca_pem)
            except ssl.SSLError as exc:
                raise UsageError(f"the CA certificates do not load: {exc.reason}") from None
        elif self.pins:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the pin, checked after the handshake
        else:
            context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


class PinMismatch(Untrusted):
    pass


class _PinnedHttps(http.client.HTTPSConnection):
    """An HTTPS connection that refuses, before sending anything, a peer whose certificate's
    public key is not pinned."""

    def __init__(self, *args: Any, pins: tuple[bytes, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pins = pins

    def connect(self) -> None:
        super().connect()
        if not self._pins:
            return
        certificate = self.sock.getpeercert(binary_form=True)
        found = spki_sha256(certificate) if certificate else b""
        if not any(hmac.compare_digest(found, pin) for pin in self._pins):
            self.close()
            raise PinMismatch(
                f"the broker's TLS key (pin-sha256 {b64(found) or 'none'}) is not pinned"
            )


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    retry_after: float | None = None
    """``Retry-After`` in seconds, when the broker sent it as a number."""


class Transport(Protocol):
    """One request to the broker, its answer; ``Unreachable`` or ``Untrusted`` when there is
    none to believe."""

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> Reply: ...


@dataclass
class HttpTransport:
    url: BrokerUrl
    tls: TlsTrust = field(default_factory=TlsTrust)
    timeout: float = 30.0
    _context: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    def _connection(self) -> http.client.HTTPConnection:
        if self.url.scheme == "http":
            return http.client.HTTPConnection(self.url.host, self.url.port, timeout=self.timeout)
        if self._context is None:
            self._context = self.tls.context()
        return _PinnedHttps(
            self.url.host,
            self.url.port,
            timeout=self.timeout,
            context=self._context,
            pins=self.tls.pins,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> Reply:
        headers = {"Accept": "application/json", "User-Agent": f"keybroker-guest/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        target = self.url.prefix + quote(path, safe="/")
        connection = self._connection()
        try:
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            answer = response.read(MAX_ANSWER_BYTES + 1)
            retry_after = _seconds(response.getheader("Retry-After"))
            status = response.status
        except ssl.SSLCertVerificationError as exc:
            raise Untrusted(
                f"the broker's TLS certificate does not verify: {exc.verify_message}"
            ) from None
        except ssl.SSLError as exc:
            raise Untrusted(f"TLS with {self.url} failed: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"cannot reach {self.url}: {_describe(exc)}") from None
        finally:
            connection.close()
        if len(answer) > MAX_ANSWER_BYTES:
            raise Untrusted(f"{path}: answer longer than {MAX_ANSWER_BYTES} bytes")
        return Reply(status, answer, retry_after)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _seconds(value: str | None) -> float | None:
    """A delta-seconds ``Retry-After`` (RFC 9110 §10.2.3); an HTTP-date is not used."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return float(int(value))


@dataclass
class Backoff:
    """Delays between attempts: ``first`` doubling up to ``cap``, each drawn from its upper
    half at random so that guests started together spread out."""

    first: float = 0.5
    cap: float = 8.0
    _draw: Callable[[float, float], float] = field(default=secrets.SystemRandom().uniform)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.first * 2 ** min(attempt, 16))
        return self._draw(ceiling / 2, ceiling)


@dataclass
class RetryingTransport:
    """Retries a request that could not reach the broker or got a transient status, until
    ``wait_seconds`` have passed since the first attempt of that request; then the last
    failure stands. Refusals and untrusted answers are never retried."""

    inner: Transport
    wait_seconds: float = 60.0
    notice: Callable[[str], None] = lambda message: None
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> Reply:
        deadline = self.clock() + self.wait_seconds
        attempt = 0
        while True:
            reply: Reply | None
            try:
                reply = self.inner.request(method, path, body, token)
            except Unreachable as exc:
                failure = str(exc)
                reply = None
            else:
                if reply.status not in TRANSIENT_STATUSES:
                    return reply
                failure = f"{path}: {reply.status}"
            delay = self.backoff.delay(attempt)
            if reply is not None and reply.retry_after is not None:
                delay = min(max(delay, reply.retry_after), MAX_RETRY_AFTER_SECONDS)
            attempt += 1
            if self.clock() + delay > deadline:
                if reply is not None:
                    return reply  # the transient status stands: the caller says what it is
                tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
                raise Unreachable(f"{failure} (gave up after {tries})")
            self.notice(f"{failure}; retrying in {delay:.1f} s")
            self.sleep(delay)
