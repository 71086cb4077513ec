"""One fetch: the broker's signing key, then challenge and release with the attestation in it
(the one-request flow, the default), or challenge, attest and release with the token (the
token flow), then the envelope opened. :func:`attested_release` is the exchange with the
broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from keybroker_guest import protocol
from keybroker_guest.binding import binding_digest, report_data
from keybroker_guest.encoding import from_b64
from keybroker_guest.errors import Denied, Untrusted, UsageError
from keybroker_guest.evidence import BindingInput, EvidenceSource
from keybroker_guest.jws import BrokerKey
from keybroker_guest.protocol import Released
from keybroker_guest.teekey import new_tee_key, public_jwk, spki_der
from keybroker_guest.transport import Transport

#: Attempts at challenge-attest when the nonce was spent (409: expired or replayed, e.g. a
#: retried attest whose first answer was lost).
NONCE_ATTEMPTS = 3
#: How a key is released: with the evidence in the release request itself (two round trips),
#: or with an attestation-result token asked for first (three; the broker's API for guests
#: that fetch several keys on one token).
FLOWS = ("one-request", "token")


@dataclass(frozen=True)
class BrokerKeyPin:
    """How the guest knows the key the broker signs releases with.

    ``known`` is the key itself (recorded at bind time: no request needed); ``thumbprint`` its
    RFC 7638 thumbprint, matched against the broker's ``/v1/jwks``. With neither, the key
    ``/v1/jwks`` serves is taken, which only a channel that authenticates the broker makes
    safe (TLS, or the machine's own loopback)."""

    thumbprint: str | None = None
    known: BrokerKey | None = None

    def resolve(self, transport: Transport, authenticated: bool) -> BrokerKey:
        if self.known is not None:
            if self.thumbprint is not None and self.thumbprint != self.known.thumbprint:
                raise Untrusted(
                    f"the recorded broker key is {self.known.thumbprint}, not {self.thumbprint}"
                )
            return self.known
        if self.thumbprint is None and not authenticated:
            raise UsageError(
                "over plain HTTP to another host nothing authenticates the broker: use https "
                "(--ca or --pin-sha256) or pin its signing key (--broker-key-sha256)"
            )
        reply = transport.request("GET", protocol.JWKS)
        keys = protocol.read_jwks(protocol.read(protocol.JWKS, reply))
        return protocol.pinned_key(keys, self.thumbprint)


def attested_release(
    transport: Transport,
    source: EvidenceSource,
    key: str,
    private_key: rsa.RSAPrivateKey,
    flow: str = "one-request",
) -> str:
    """Challenge, evidence bound to the nonce and ``private_key``, then release with that
    attestation (``one-request``), or attest and release with the token (``token``): the
    signed envelope (unverified)."""
    if flow not in FLOWS:
        raise UsageError(f"the flow is one of {', '.join(FLOWS)}, not {flow!r}")
    jwk = public_jwk(private_key)
    path = protocol.release_path(key)
    attempt = 0
    while True:
        attempt += 1
        reply = transport.request(
            "POST", protocol.CHALLENGE, protocol.challenge_request(source.tee)
        )
        nonce = protocol.read_nonce(protocol.read(protocol.CHALLENGE, reply))
        try:
            nonce_bytes = from_b64(nonce, "nonce")
        except ValueError as exc:
            raise Untrusted(f"{protocol.CHALLENGE}: {exc}") from None
        evidence, collateral = source.produce(
            BindingInput(
                report_data(nonce, jwk),
                nonce_bytes,
                spki_der(private_key),
                digest=binding_digest(nonce, jwk),
            )
        )
        body = protocol.attest_request(source.tee, evidence, collateral, jwk, nonce)
        # A 409 is a nonce spent or expired (e.g. a retried request whose first answer was
        # lost): ask for another.
        try:
            if flow == "one-request":
                reply = transport.request("POST", path, body)
                return protocol.read_envelope(protocol.read(path, reply), key)
            reply = transport.request("POST", protocol.ATTEST, body)
            token = protocol.read_token(protocol.read(protocol.ATTEST, reply))
        except Denied as exc:
            if exc.status == 409 and attempt < NONCE_ATTEMPTS:
                continue
            raise
        reply = transport.request("POST", path, protocol.release_request(jwk), token)
        return protocol.read_envelope(protocol.read(path, reply), key)


def fetch(
    transport: Transport,
    source: EvidenceSource,
    key: str,
    broker_key: BrokerKeyPin,
    *,
    authenticated: bool,
    rsa_bits: int = 3072,
    private_key: rsa.RSAPrivateKey | None = None,
    flow: str = "one-request",
) -> Released:
    """The released secret of ``key``. The broker's signing key is settled first, so a broker
    that is not the pinned one is refused before any evidence is produced or sent."""
    signer = broker_key.resolve(transport, authenticated)
    private_key = private_key or new_tee_key(rsa_bits)
    envelope = attested_release(transport, source, key, private_key, flow)
    return protocol.open_release(envelope, signer, private_key, key)
