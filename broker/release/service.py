"""The one orchestrator of the release flow: challenge -> attest -> release (ARCHITECTURE §1).

Ordering rules that make it fail closed:

* **challenge**: a nonce that carries its own expiry and MAC (``broker/release/nonces.py``):
  no database, no HSM.
* **attest**: check the nonce's MAC and expiry (CPU only: a forged or stale nonce costs no
  evidence verification), verify the evidence and its binding (CPU only), sign the token
  (HSM), then in one statement (so one transaction) record the nonce as consumed and append
  the audit record; the token leaves only after that commit. A nonce consumed before makes
  the insert conflict: a replay. A failed attestation consumes its nonce too and is audited
  as a denial; a refused nonce consumes nothing and is audited as a denial, alone once its
  MAC verified, in aggregate before (``broker/release/unauthenticated.py``).
* **release**: evaluate the policy; on allow have the HSM build the envelope and sign the
  response, then append the audit record (one statement, committed); only then answer. A
  database failure at that point discards the envelope and answers 503. The key's context
  (version, state, blob, bound policy) may come from a per-worker cache, in which case the
  append is conditional on that context still being current; when it is not, the decision
  and the envelope are discarded and the release starts over on a fresh read. A token whose
  signature does not verify is refused and audited in aggregate, as an unrecognised nonce is.
  A policy with release limits (``broker/policy/limits.py``) has them taken, with the key's
  counters, by the statement that appends the allow record; a limit that refuses writes
  nothing, and the denial naming it is appended instead (the envelope is never sent).
* **attested release** (one request, ``attested_release``): the attestation's checks, then
  the release's through the same :meth:`ReleaseService.settle`, on the evidence's own claims
  and tee key, with no token; one record for both, appended in the statement that consumes
  the nonce (and, on a remembered context, checks that it is still current, and takes the
  policy's release limits). A replay writes nothing and is audited as one.

Trustee's KBS protocol (``broker/api/kbs/``, docs/kbs.md) runs the same two steps: an
attestation with the RCAR binding rule (``AttestRequest.rcar``), and ``release_resource``,
which finds the key by its KBS path and seals a JWE in broker memory instead of the HSM
envelope, only for keys whose exposure is ``broker-memory``.

The KMS-compatible endpoint (``broker/release/kms.py``, docs/kms.md) settles each operation
on a key through :meth:`ReleaseService.settle` with its own judgement (the policy's ``kms``
member, and the claims of a ``Recipient``: a Nitro document, or an evidence bundle whose nonce
it consumes through :meth:`ReleaseService.consume_nonce`) and its own sealer.

Each audit append is a single statement outside any explicit transaction, so the chain
head's row lock (``audit_append``) is held only while PostgreSQL commits; held across a
round trip to a busy broker it would make every other release wait in line.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from broker import jose
from broker.errors import (
    DatabaseUnavailable,
    ExposureRefused,
    InternalError,
    KeybrokerError,
    KeyDestroyed,
    KeyDisabled,
    KeyNotFound,
    KeyPendingDeletion,
    NonceReplayed,
    Outcome,
    PolicyDenied,
    PublicKeyInvalid,
    StoredPolicyInvalid,
    TokenInvalid,
    Unavailable,
    Unrecognised,
)
from broker.evidence import trustee
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import TeeVerifier, supported_tees, verifier_for
from broker.hsmcalls import hsm_errors, kbs_recipient, tee_key_from_jwk
from broker.logs import get_logger
from broker.lru import Lru
from broker.metrics import Children, Metrics, timed, timed_outcome
from broker.names import KbsPath
from broker.policy.evaluate import ClauseResult, Decision, describe
from broker.policy.limits import Refusal, refusal_clause, unidentified_clause
from broker.policy.limits import instance as limits_instance
from broker.policy.model import Limits, Policy
from broker.release import binding, nonces, tokens
from broker.release.collateral import CollateralResolver
from broker.release.contextcache import ContextCache
from broker.release.origin import Origin
from broker.release.policies import PolicyCache, audit_summary
from broker.release.unauthenticated import UnauthenticatedAudit
from broker.runtime import Runtime
from broker.store.audit import AuditRecord
from broker.store.contexts import BoundPolicy, LimitRefused, LimitTake, ReleaseContext
from broker.store.release import ReleaseStore
from broker.timeutil import iso, utcnow
from hsm import jwe
from hsm.custody import WrappedSecret
from hsm.envelope import SealedSecret
from hsm.pubkey import RsaPublicKey, b64url

if TYPE_CHECKING:
    from pkcs11 import Session

#: Makes a release's answer once its key and policy allowed it: the envelope (with its
#: ``envelope_sha256``), filling the audit body with what it exposed.
Sealer = Callable[[ReleaseContext, datetime, dict[str, Any]], Awaitable[dict[str, Any]]]


class Limited(NamedTuple):
    """A release its policy allowed under release limits: what the statement takes, and the
    limits themselves (to explain a refusal)."""

    take: LimitTake
    limits: Limits


#: Judges a request on the key's bound policy at ``now``: raises the refusal, fills the audit
#: body with the decision; on allow, returns the policy's release limits as the release
#: statement must take them for this request (None when the policy states none).
Judge = Callable[[Policy, datetime, dict[str, Any]], Limited | None]

#: What committing a release's record came to: written; not written because the context it
#: was decided on is no longer current (decide again); not written because its nonce was
#: consumed before (a one-request release replayed); not written because a release limit
#: refused it (audit the denial instead).
Committed = Literal["committed", "stale", "replayed"] | LimitRefused

#: Commits a release's record, decided on ``context`` (None: no key, or read fresh and
#: appended unconditionally) and taking the policy's release limits when it states any, in
#: one statement.
Commit = Callable[[ReleaseContext | None, AuditRecord, LimitTake | None], Awaitable[Committed]]

log = get_logger("keybroker.release")

#: The refusal of a key in each state but ``active`` (the others are ``disabled``).
STATE_REFUSALS: Mapping[str, type[KeyDisabled]] = {
    "pending-deletion": KeyPendingDeletion,
    "destroyed": KeyDestroyed,
}

#: Decisions one release may make: the first, plus one on a fresh read each time the
#: context it used turned out to have changed before its record could be appended.
STALE_ATTEMPTS = 4


#: About 30 s of attestations at 500 a second, in about 3 MB.
CONSUMED_NONCES_REMEMBERED = 16384

#: The endpoints as the metrics and the aggregate audit records name them (their routes).
ATTEST_ENDPOINT = "/v1/attest"
RELEASE_ENDPOINT = "/v1/keys/{name}/release"
KBS_ATTEST_ENDPOINT = "/kbs/v0/attest"
KBS_RESOURCE_ENDPOINT = "/kbs/v0/resource/{path}"

#: The verifier of every tee the broker verifies, found at import (each is a constant of
#: its package).
_VERIFIERS: dict[Tee, TeeVerifier] = {tee: verifier_for(tee) for tee in supported_tees()}


def _verifier(tee: Tee) -> TeeVerifier:
    """The verifier of ``tee``; ``UnsupportedEvidence`` (from the registry) when none."""
    verifier = _VERIFIERS.get(tee)
    return verifier_for(tee) if verifier is None else verifier


def outcome(failure: KeybrokerError | None) -> Outcome:
    """``allow``, or the failure's own outcome (``broker/errors.py``): ``deny`` when the
    request was judged and refused, ``error`` when it could not be judged or served."""
    return "allow" if failure is None else failure.outcome


def _record(
    now: datetime,
    kind: str,
    failure: KeybrokerError | None,
    origin: Origin,
    key_name: str | None,
    *,
    body: dict[str, Any],
) -> AuditRecord:
    if failure is not None:
        body["error"] = {"type": failure.type, "detail": failure.detail}
    if origin.client_request_id is not None:
        body["client_request_id"] = origin.client_request_id
    return AuditRecord(now, kind, outcome(failure), origin.request_id, key_name, body)


def _record_claims(claims: Claims, body: dict[str, Any]) -> dict[str, Any]:
    """Put the verified claims in an attest record's ``body``, with the instants freshness
    clauses read, so a policy replayed over the record later judges them as this
    attestation was judged (``broker/policy/replay.py``); the claims document."""
    body["claims"] = document = claims.document()
    if claims.evidence_time is not None:
        body["evidence_time"] = iso(claims.evidence_time)
    if claims.collateral_time is not None:
        body["collateral_time"] = iso(claims.collateral_time)
    return document


def _as_refused(record: AuditRecord, failure: KeybrokerError) -> AuditRecord:
    """``record`` as the refusal ``failure`` instead of its own decision: what was decided
    stays on record, but no envelope, which never left."""
    body = {name: value for name, value in record.body.items() if name != "envelope_sha256"}
    body["error"] = {"type": failure.type, "detail": failure.detail}
    return replace(record, decision=outcome(failure), body=body)


@dataclass(frozen=True, slots=True)
class AttestRequest:
    tee: Tee
    evidence: bytes
    tee_jwk: Mapping[str, Any]
    tee_key: tokens.TeeKey
    nonce_text: str
    collateral: Mapping[str, bytes]
    origin: Origin
    rcar: binding.RcarBinding | None = None
    """Set for a KBS attestation: its binding rule (``binding.RcarBinding``) replaces the
    native one."""

    @property
    def endpoint(self) -> str:
        """The endpoint it came to, as aggregate audit records name it."""
        return ATTEST_ENDPOINT if self.rcar is None else KBS_ATTEST_ENDPOINT


def _attestation_fields(request: AttestRequest) -> dict[str, Any]:
    """What an attestation's record says of its request before anything is judged."""
    return {
        "tee": request.tee.value,
        "evidence_sha256": hashlib.sha256(request.evidence).hexdigest(),
        "tee_pubkey_thumbprint": request.tee_key.thumbprint(),
        "plaintext_in_broker": False,
    }


def attest_request(
    *,
    tee: Tee,
    evidence: bytes,
    tee_jwk: Mapping[str, Any],
    nonce_text: str,
    collateral: Mapping[str, bytes],
    origin: Origin,
) -> AttestRequest:
    """An attestation request whose tee key is the RSA JWK it carries: ``PublicKeyInvalid``
    (400) for any other, before anything is judged or audited."""
    return AttestRequest(
        tee, evidence, tee_jwk, tee_key_from_jwk(tee_jwk), nonce_text, collateral, origin
    )


def kbs_attest_request(
    *,
    tee: Tee,
    tee_pubkey: Any,
    primary_evidence: Any,
    nonce_text: str,
    origin: Origin,
    rcar: binding.RcarBinding,
) -> AttestRequest:
    """A KBS attestation request: its tee key is the ``tee-pubkey`` JWK it carries (EC
    P-256/P-384/P-521 or RSA, ``hsm.jwe``; ``PublicKeyInvalid``, 400, for any other), its
    evidence and collateral Trustee's evidence JSON read to native form (``MalformedEvidence``),
    in that order, before anything is judged or audited."""
    to = kbs_recipient(tee_pubkey)
    native = trustee.to_native(tee, primary_evidence)
    return AttestRequest(
        tee, native.evidence, dict(to.jwk), to, nonce_text, native.collateral, origin, rcar=rcar
    )


class ReleaseService:
    def __init__(
        self,
        runtime: Runtime,
        metrics: Metrics,
        collateral: CollateralResolver,
        policies: PolicyCache,
        store: ReleaseStore,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.custody = runtime.custody
        self.settings = runtime.settings
        self.metrics = metrics
        self.collateral = collateral
        self.policies = policies
        with hsm_errors():
            public_key = runtime.custody.signing_public_key
            self.kid = jose.key_id(public_key)
            nonce_key = runtime.custody.nonce_mac_key()
        self.nonces = nonces.Nonces(nonce_key, self.settings.challenge_ttl_seconds)
        self.issued = tokens.IssuedTokens(public_key)
        # Nonces this worker consumed: a replay reaching the same worker is refused before
        # its evidence is verified and a token signed (one on another worker or replica is
        # refused by the database, after that work, as every replay was before).
        self.consumed: Lru[bytes, bool] = Lru(CONSUMED_NONCES_REMEMBERED)
        self._decisions = Children(metrics.decisions)
        self._evidence_seconds = Children(metrics.evidence_seconds)
        self._envelope_seconds = Children(metrics.envelope_seconds)
        self._commit_seconds = Children(metrics.commit_seconds)
        self.contexts = ContextCache(runtime.settings.release_context_cache_size)
        self.unauthenticated = UnauthenticatedAudit(
            self._append_aggregate,
            metrics,
            runtime.settings.unauthenticated_audit_sources,
        )

    async def _append_aggregate(self, record: AuditRecord) -> int:
        """An aggregate record, through the store the service holds at the time."""
        return await self._append(record)

    async def _append(self, record: AuditRecord) -> int:
        """Append ``record`` (one statement, committed), timed."""
        with timed(self._commit_seconds("append")):
            return await self.store.append(record)

    def _count(self, record: AuditRecord, failure: KeybrokerError | None) -> None:
        """Count a committed decision (``keybroker_decisions``). The key is named only when
        one was found by that name (``body["key"]``), so unknown names add no series."""
        body = record.body
        key = body.get("key")
        recipient = body.get("recipient")
        tee = body.get("tee") or (recipient.get("tee") if isinstance(recipient, dict) else None)
        self._decisions(
            record.kind,
            key["name"] if isinstance(key, dict) else "",
            tee or "",
            record.decision,
            "" if failure is None else failure.type,
        ).inc()

    def jwks(self) -> dict[str, Any]:
        """The broker's signing key as a JWK Set (RFC 7517), to verify tokens and release
        envelopes."""
        with hsm_errors():
            public = self.custody.signing_public_key
        key = {**jose.ec_jwk(public), "kid": jose.key_id(public), "alg": "ES256", "use": "sig"}
        return {"keys": [key]}

    # --- challenge -------------------------------------------------------------------------

    async def challenge(self, tee: Tee) -> dict[str, str]:
        """A nonce for ``tee``: pure CPU, nothing stored (``broker/release/nonces.py``)."""
        _verifier(tee)  # refuse a tee we cannot verify before issuing anything
        nonce, expires_at = self.nonces.issue(tee.value, utcnow())
        return {
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "expires_at": iso(expires_at),
        }

    # --- attest ----------------------------------------------------------------------------

    async def attest(self, request: AttestRequest) -> dict[str, Any]:
        now = utcnow()
        body = _attestation_fields(request)
        if request.rcar is not None:
            body["protocol"] = "kbs"
        live: tuple[bytes, datetime] | None = None  # the nonce and its expiry, once checked
        document: dict[str, Any] | None = None
        token: str | None = None
        issued: tokens.AttestationResult | None = None
        failure: KeybrokerError | None = None
        try:
            live = self._live_nonce(request, now)
            claims = await self._attested_claims(request, now, live[0], body)
            document = body["claims"]
            payload = tokens.payload(
                claims,
                dict(request.tee_jwk),
                body["evidence_sha256"],
                now,
                self.settings.token_ttl_seconds,
            )
            with hsm_errors():
                token = await jose.sign(
                    payload, jose.TYP_ATTESTATION_RESULT, self.kid, self.custody.sign_digest_async
                )
            issued = tokens.result_of(payload, claims, request.tee_key, now)
            body["token_id"] = issued.token_id
        except DatabaseUnavailable:
            raise  # nothing can be recorded, so nothing is decided: 503
        except KeybrokerError as exc:
            failure = exc
        if isinstance(failure, Unrecognised):  # no nonce of ours: audited in aggregate
            self.unauthenticated.refused(request.origin, request.endpoint, failure)
            raise failure

        failure = await self._commit_attestation(request, live, now, failure, body)
        if failure is not None:
            raise failure
        if issued is None or token is None or document is None:  # unreachable without failure
            raise InternalError("attestation produced no token")
        self.issued.remember(token, issued)  # committed: releases may now use it
        return {
            "token": token,
            "token_type": "Bearer",
            "expires_in": self.settings.token_ttl_seconds,
            "claims": document,
        }

    def _live_nonce(self, request: AttestRequest, now: datetime) -> tuple[bytes, datetime]:
        """The request's nonce and its expiry, once its MAC, tee and expiry are checked (CPU
        only) and this worker has not seen it consumed."""
        nonce = nonces.decode(request.nonce_text)
        expires_at = self.nonces.check(nonce, request.tee.value, now)
        if self.consumed.get(nonce):
            raise NonceReplayed("nonce was already used")
        return nonce, expires_at

    async def _attested_claims(
        self, request: AttestRequest, now: datetime, nonce: bytes, body: dict[str, Any]
    ) -> Claims:
        """The evidence's claims, verified and bound to ``nonce`` and the tee key; fills
        ``body`` with the signer, the claims (with the instants a replay judges them at) and
        the binding as it learns them."""
        with timed_outcome(self._evidence_seconds, request.tee.value):
            claims = await self._verify(request, now)
        body["signer"] = claims.signer.to_json()
        _record_claims(claims, body)
        body["binding"] = self._check_binding(request, claims, nonce)
        return claims

    @staticmethod
    def _check_binding(request: AttestRequest, claims: Claims, nonce: bytes) -> Any:
        """The request's binding rule applied to ``claims``; what the record says of it."""
        if request.rcar is not None:
            return request.rcar.check(claims, request.nonce_text, request.tee_jwk)
        if not isinstance(request.tee_key, RsaPublicKey):  # the native API parses RSA only
            raise PublicKeyInvalid("the native binding takes an RSA tee key")
        return binding.check_binding(
            claims, nonce, request.nonce_text, request.tee_jwk, request.tee_key
        )

    async def _commit_attestation(
        self,
        request: AttestRequest,
        live: tuple[bytes, datetime] | None,
        now: datetime,
        failure: KeybrokerError | None,
        body: dict[str, Any],
    ) -> KeybrokerError | None:
        """Audit the attestation, committed, and count it; the failure it ends in.

        One statement consumes the nonce and appends the record, committed before the token
        leaves. A nonce refused by its MAC or expiry was never consumed; one consumed before
        (a replay) makes the statement write nothing. Either way the refusal is audited
        instead and becomes the answer (409)."""
        consumed = None
        if live is not None:
            with timed(self._commit_seconds("consume_nonce_and_append")):
                consumed = await self.store.consume_nonce_and_append(
                    live[0],
                    request.tee.value,
                    live[1],
                    _record(now, "attest", failure, request.origin, None, body=body),
                )
            if consumed is None:
                failure = NonceReplayed("nonce was already used")
                body.pop("token_id", None)  # signed, but it never leaves: name no token
            else:
                self.consumed.put(live[0], True)
        record = _record(now, "attest", failure, request.origin, None, body=body)
        if consumed is None:
            await self._append(record)
        self._count(record, failure)
        return failure

    async def _verify(self, request: AttestRequest, now: datetime) -> Claims:
        return await self.verify_evidence(request.tee, request.evidence, request.collateral, now)

    async def verify_evidence(
        self, tee: Tee, evidence: bytes, supplied: Mapping[str, bytes], now: datetime
    ) -> Claims:
        """``evidence`` verified to its pinned root at ``now``, with the collateral the
        guest ``supplied`` completed from the store or the vendor; its normalised claims."""
        verifier = _verifier(tee)
        collateral = await self.collateral.resolve(tee, evidence, supplied, now)
        return verifier.verify(evidence, collateral, now=now, extra_roots=self.runtime.test_roots)

    # --- release ---------------------------------------------------------------------------

    async def release(
        self,
        bearer: str,
        key_name: str,
        presented_jwk: Mapping[str, Any] | None,
        origin: Origin,
    ) -> dict[str, Any]:
        """The native release: the key's envelope, made inside the HSM, and signed. Every
        outcome, a refused token included, is audited before the answer; a token whose
        signature does not verify is audited in aggregate instead
        (``broker/release/unauthenticated.py``)."""
        now = utcnow()
        token_fields: dict[str, Any] = {"plaintext_in_broker": False}
        try:
            result = self._check_token(bearer, presented_jwk, now, token_fields)
        except Unrecognised as exc:  # no token of ours: audited in aggregate
            self.unauthenticated.refused(origin, RELEASE_ENDPOINT, exc)
            raise
        except KeybrokerError as exc:  # no key was looked at: nothing to check at the append
            record = _record(now, "release", exc, origin, key_name, body=token_fields)
            return await self._conclude(record, exc)
        return await self.settle(
            key_name,
            now,
            token_fields,
            origin,
            judge=self.claims_judge(result.claims),
            seal=functools.partial(self._seal, tee_key=result.tee_key),
        )

    async def attested_release(self, request: AttestRequest, key_name: str) -> dict[str, Any]:
        """The native release in one request: the attestation's checks (``attest``), then
        the release's (``settle``, release limits included) on the claims just verified and
        the tee key the evidence binds, no token issued. One record (kind ``release``, with
        the attestation's fields and ``flow: one-request``) is appended in the statement that
        consumes the nonce; a nonce consumed before makes that statement write nothing, and
        the refusal is audited instead (409). A nonce that is not ours is audited in
        aggregate."""
        now = utcnow()
        tee = request.tee.value
        body = _attestation_fields(request)
        body["flow"] = "one-request"
        live: tuple[bytes, datetime] | None = None
        try:
            live = self._live_nonce(request, now)
            claims = await self._attested_claims(request, now, live[0], body)
        except DatabaseUnavailable:
            raise  # nothing can be recorded, so nothing is decided: 503
        except Unrecognised as exc:  # no nonce of ours: audited in aggregate
            self.unauthenticated.refused(request.origin, RELEASE_ENDPOINT, exc)
            raise
        except KeybrokerError as exc:
            record = _record(now, "release", exc, request.origin, key_name, body=body)
            commit = None if live is None else self._consuming(live, tee)
            return await self._conclude(record, exc, commit=commit)
        return await self.settle(
            key_name,
            now,
            body,
            request.origin,
            judge=self.claims_judge(claims),
            seal=functools.partial(self._seal, tee_key=request.tee_key),
            commit=self._consuming(live, tee),
        )

    def _consuming(self, live: tuple[bytes, datetime], tee: str) -> Commit:
        """Commits a one-request release's record with its nonce: consumed in the statement
        that appends it, which on a remembered context (always, under release limits) also
        checks that it is current and takes the limits."""
        nonce, expires_at = live
        conditional = self.contexts.capacity > 0

        async def commit(
            context: ReleaseContext | None, record: AuditRecord, take: LimitTake | None
        ) -> Committed:
            committed: Committed
            if context is None or (take is None and not conditional):
                if take is not None:  # unreachable: limits come from a key's policy
                    raise InternalError("release limits taken without a key context")
                with timed(self._commit_seconds("consume_nonce_and_append")):
                    seq = await self.store.consume_nonce_and_append(nonce, tee, expires_at, record)
                committed = "replayed" if seq is None else "committed"
            else:
                with timed(self._commit_seconds("consume_nonce_and_append_if_current")):
                    current, taken = await self.store.consume_nonce_and_append_if_current(
                        nonce, tee, expires_at, context, record, take=take
                    )
                if isinstance(taken, LimitRefused):
                    committed = taken
                else:
                    committed = (
                        "stale" if not current else "replayed" if taken is None else "committed"
                    )
            if committed == "committed":
                self.consumed.put(nonce, True)
            return committed

        return commit

    async def _appending(
        self, context: ReleaseContext | None, record: AuditRecord, take: LimitTake | None
    ) -> Committed:
        """Commits a record decided with no nonce to consume: unconditionally when no context
        is remembered (none, or the cache is off), else only if that context is still
        current; under release limits always conditionally, taking them."""
        if take is not None:
            if context is None:  # unreachable: limits come from a key's policy
                raise InternalError("release limits taken without a key context")
            # The policy's limits are taken with the key's counters in the statement that
            # appends the record: counted exactly when the release is recorded.
            with timed(self._commit_seconds("append_within_limits")):
                taken = await self.store.append_within_limits(context, record, take)
            if taken is None:
                return "stale"
            return taken if isinstance(taken, LimitRefused) else "committed"
        if context is None or self.contexts.capacity == 0:
            await self._append(record)
            return "committed"
        with timed(self._commit_seconds("append_if_current")):
            seq = await self.store.append_if_current(context, record)
        return "stale" if seq is None else "committed"

    async def release_resource(self, bearer: str, path: KbsPath, origin: Origin) -> dict[str, Any]:
        """A KBS resource: the key at ``path``, as a JWE to the token's tee key
        (``hsm/jwe.py``; only for keys whose exposure is ``broker-memory``). Audited as any
        release, with the path, the envelope and where the secret was."""
        now = utcnow()
        token_fields: dict[str, Any] = {
            "plaintext_in_broker": False,
            "protocol": "kbs",
            "kbs_path": str(path),
        }
        try:
            result = self._check_token(bearer, None, now, token_fields)
            recipient = _kbs_recipient(result)
            key_name = await self.store.key_at_path(path)
            if key_name is None:
                raise KeyNotFound(f"no key answers at KBS path {path}")
        except DatabaseUnavailable:
            raise  # nothing can be recorded, so nothing is decided: 503
        except Unrecognised as exc:  # no token of ours: audited in aggregate
            self.unauthenticated.refused(origin, KBS_RESOURCE_ENDPOINT, exc)
            raise
        except KeybrokerError as exc:
            record = _record(now, "release", exc, origin, None, body=token_fields)
            return await self._conclude(record, exc)

        async def seal(
            context: ReleaseContext, now: datetime, body: dict[str, Any]
        ) -> dict[str, Any]:
            return await self._seal_jwe(context, recipient, body)

        return await self.settle(
            key_name, now, token_fields, origin, judge=self.claims_judge(result.claims), seal=seal
        )

    def claims_judge(self, claims: Claims) -> Judge:
        """The judgement of an attested request: the policy evaluated on ``claims``."""

        def judge(policy: Policy, now: datetime, body: dict[str, Any]) -> Limited | None:
            with timed(self.metrics.policy_seconds):
                decision = self.policies.evaluate(policy, claims, now)
            body.update(audit_summary(decision))
            if not decision.allow:
                raise decision.to_error()
            if policy.limits is None:
                return None
            return Limited(limit_take(policy, decision, claims, body), policy.limits)

        return judge

    async def settle(
        self,
        key_name: str,
        now: datetime,
        fields: dict[str, Any],
        origin: Origin,
        *,
        judge: Judge,
        seal: Sealer,
        kind: str = "release",
        commit: Commit | None = None,
    ) -> dict[str, Any]:
        """Decide (``judge``), seal and audit (as ``kind``) a use of ``key_name``; ``fields``
        start each attempt's record, and ``commit`` writes it (by default ``_appending``; a
        one-request release consumes its nonce in the same statement).

        With the context cache on, the decision (and the envelope) is made on the key's
        remembered context when there is one, and its record is appended only if that
        context is still current (``ReleaseStore.append_if_current``); when it is not, nothing
        was written, the envelope is dropped, and the release reads the context afresh and
        starts over, at most :data:`STALE_ATTEMPTS` times in all (then 503, audited). A
        steady-state release thus runs one statement. With the cache off (size 0), the
        context is read and the record appended unconditionally, in two statements. When the
        judge found release limits, the statement takes them; one that refuses writes
        nothing, and the denial naming it is committed instead.
        """

        def record(failure: KeybrokerError | None, body: dict[str, Any]) -> AuditRecord:
            return _record(now, kind, failure, origin, key_name, body=body)

        commit = commit or self._appending
        context = self.contexts.get(key_name)
        for attempt in range(1, STALE_ATTEMPTS + 1):
            if context is None:
                context = await self.store.context(key_name)  # absent keys never cached
                if context is not None:
                    self.contexts.put(context)
            body = dict(fields)  # each attempt's record describes its own decision
            response, failure, limited = await self._decide(
                key_name, context, now, body, judge=judge, seal=seal
            )
            # One statement, committed before we answer.
            attempted = record(failure, body)
            committed = await commit(context, attempted, None if limited is None else limited.take)
            if isinstance(committed, LimitRefused) and limited is not None:
                # Refused by a limit: nothing was written; the denial is audited instead.
                failure, response = _limit_denial(committed, limited, body), None
                attempted = record(failure, body)
                committed = await commit(context, attempted, None)
            if committed != "stale":
                return await self._answered(committed, attempted, failure, response)
            # The key, its binding or its policy changed since the context was read: this
            # decision and its envelope (never sent) are void; decide again on a fresh read.
            log.info("release_context_changed", key_name=key_name, attempt=attempt)
            if context is not None:
                self.contexts.discard(context)
            context = None
        exhausted = Unavailable(
            f"key {key_name} changed during each of {STALE_ATTEMPTS} attempts to release it; "
            "try again"
        )
        return await self._conclude(record(exhausted, dict(fields)), exhausted, commit=commit)

    async def conclude(
        self,
        now: datetime,
        kind: str,
        failure: KeybrokerError | None,
        origin: Origin,
        *,
        key_name: str | None,
        body: dict[str, Any],
        response: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Audit a decision made on no key context (a refusal before a key was looked at, or
        an answer that uses no key), committed, then raise ``failure`` or answer."""
        record = _record(now, kind, failure, origin, key_name, body=body)
        return await self._conclude(record, failure, response)

    async def consume_nonce(
        self,
        nonce: bytes,
        tee: str,
        expires_at: datetime,
        *,
        now: datetime,
        kind: str,
        failure: KeybrokerError | None,
        origin: Origin,
        key_name: str | None,
        body: dict[str, Any],
    ) -> bool:
        """Consume ``nonce`` (checked by ``Nonces.check`` for ``tee``) in the statement that
        appends the record of this decision, as the native attest does. False, writing
        nothing, when the nonce was consumed before (a replay the caller audits)."""
        record = _record(now, kind, failure, origin, key_name, body=body)
        if await self.store.consume_nonce_and_append(nonce, tee, expires_at, record) is None:
            return False
        self.consumed.put(nonce, True)
        return True

    async def _conclude(
        self,
        record: AuditRecord,
        failure: KeybrokerError | None,
        response: dict[str, Any] | None = None,
        *,
        commit: Commit | None = None,
    ) -> dict[str, Any]:
        """Commit ``record`` unconditionally (one statement, with the nonce when ``commit``
        consumes one), then answer."""
        committed = await (commit or self._appending)(None, record, None)
        return await self._answered(committed, record, failure, response)

    async def _answered(
        self,
        committed: Committed,
        record: AuditRecord,
        failure: KeybrokerError | None,
        response: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The answer once ``record`` was committed, or, when its nonce had been consumed
        before and nothing was written, the replay's refusal, audited first."""
        if isinstance(committed, LimitRefused):  # unreachable: settle audits the denial
            raise InternalError("a release limit refused a record taken without limits")
        if committed == "replayed":
            failure, response = NonceReplayed("nonce was already used"), None
            record = _as_refused(record, failure)
            await self._append(record)
        return self._answer(record, failure, response)

    def _answer(
        self,
        record: AuditRecord,
        failure: KeybrokerError | None,
        response: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Called once ``record`` is committed: count it, then raise or answer."""
        self._count(record, failure)
        if failure is not None:
            raise failure
        if response is None:  # unreachable: no failure means the envelope exists
            raise InternalError("release produced no envelope")
        return response

    def _check_token(
        self,
        bearer: str,
        presented_jwk: Mapping[str, Any] | None,
        now: datetime,
        body: dict[str, Any],
    ) -> tokens.AttestationResult:
        """The token's attestation result; fills ``body`` with what names it."""
        with hsm_errors():
            public_key = self.custody.signing_public_key
        result = self.issued.read(bearer, public_key, now)
        # The claims are recorded once, by the attest record that issued this token (same
        # ``token_id``); the release record names the token, the evidence and the decision.
        body.update(
            {
                "tee": result.claims.tee.value,
                "token_id": result.token_id,
                "evidence_sha256": result.evidence_sha256,
                "tee_pubkey_thumbprint": result.tee_key.thumbprint(),
            }
        )
        if presented_jwk is not None and dict(presented_jwk) != result.tee_jwk:
            raise TokenInvalid("token was issued for another tee public key")
        return result

    async def _decide(
        self,
        key_name: str,
        context: ReleaseContext | None,
        now: datetime,
        body: dict[str, Any],
        *,
        judge: Judge,
        seal: Sealer,
    ) -> tuple[dict[str, Any] | None, KeybrokerError | None, Limited | None]:
        """Check the key and its policy on ``context``, then seal: the envelope, or the
        refusal; fills ``body`` as it learns. When the policy allows and states release
        limits, also what the release statement must take of them."""
        try:
            if context is None:
                raise KeyNotFound(f"no key named {key_name}")
            body["key"] = {"name": context.name, "version": context.version}
            if context.state != "active":
                refusal = STATE_REFUSALS.get(context.state, KeyDisabled)
                raise refusal(f"key {key_name} is {context.state.replace('-', ' ')}")
            if context.policy is None:
                raise PolicyDenied(f"key {key_name} has no release policy bound: deny", [])
            take = judge(await self.bound_policy(context.policy), now, body)
            with timed(self._envelope_seconds(body.get("protocol", "native"))):
                response = await seal(context, now, body)
        except DatabaseUnavailable:
            raise  # nothing can be recorded, so nothing is released: 503
        except KeybrokerError as exc:
            return None, exc, None
        body["envelope_sha256"] = response["envelope_sha256"]
        return response, None, take

    async def bound_policy(self, bound: BoundPolicy) -> Policy:
        """The bound policy, compiled: from the cache by digest, else read and checked."""
        policy = self.policies.cached(bound.digest)
        if policy is not None:
            return policy
        document = await self.store.policy_document(bound.name, bound.version)
        if document is None:  # policies are never deleted: fail closed should one vanish
            raise StoredPolicyInvalid(f"policy {bound.name} v{bound.version} vanished")
        # ``get`` checks the document against the digest the key is bound to.
        return self.policies.get(document, bound.digest)

    async def _seal(
        self,
        context: ReleaseContext,
        now: datetime,
        body: dict[str, Any],
        *,
        tee_key: tokens.TeeKey,
    ) -> dict[str, Any]:
        if not isinstance(tee_key, RsaPublicKey):
            raise TokenInvalid(
                "the token binds an EC tee key, which only a KBS resource answer is encrypted "
                "to; the native release wraps to RSA-3072/4096 keys inside the HSM"
            )
        wrapped = WrappedSecret(context.wrapped_blob, context.secret_length, context.kek_label)
        thumbprint = tee_key.thumbprint()

        def seal_and_sign(session: Session) -> tuple[SealedSecret, dict[str, Any], str]:
            # One trip to the token's thread for both: the envelope, then its signature.
            sealed = self.custody.release_to_sync(wrapped, tee_key, session)
            envelope = {
                "key": context.name,
                "version": context.version,
                "algorithm": sealed.algorithm,
                "oaep_hash": sealed.oaep_hash.value,
                "rsa_bits": sealed.rsa_bits,
                "secret_length": sealed.secret_length,
                "ciphertext": b64url(sealed.ciphertext),
                "tee_pubkey_thumbprint": thumbprint,
                "iat": int(now.timestamp()),
            }
            signed = jose.sign_sync(
                envelope,
                jose.TYP_RELEASE,
                self.kid,
                lambda digest: self.custody.sign_digest_sync(digest, session),
            )
            return sealed, envelope, signed

        with hsm_errors():
            sealed, envelope, signed = await self.custody.pool.run(seal_and_sign)
        return {
            "envelope": signed,
            **envelope,
            "envelope_sha256": hashlib.sha256(sealed.ciphertext).hexdigest(),
        }

    async def _seal_jwe(
        self, context: ReleaseContext, to: jwe.Recipient, body: dict[str, Any]
    ) -> dict[str, Any]:
        """The KBS answer: a JWE made in broker memory, so only for a ``broker-memory`` key."""
        if context.exposure != jwe.Exposure.BROKER_MEMORY:
            raise ExposureRefused(
                f"key {context.name} has exposure {context.exposure}: its secret never leaves "
                "the HSM unwrapped, and a KBS answer (an A256GCM JWE) cannot be made inside "
                "it; a key custodian may set its exposure to broker-memory"
            )
        wrapped = WrappedSecret(context.wrapped_blob, context.secret_length, context.kek_label)
        with hsm_errors():
            envelope = await self.custody.pool.run(
                lambda session: self.custody.release_jwe_sync(wrapped, to, session)
            )
        body.update(envelope.exposure())
        return {
            "jwe": envelope.to_json(),
            "envelope_sha256": hashlib.sha256(envelope.ciphertext).hexdigest(),
        }


def limit_take(
    policy: Policy, decision: Decision, claims: Claims, body: dict[str, Any]
) -> LimitTake:
    """What the release statement takes of ``policy``'s limits for a release its claims
    satisfy: ``PolicyDenied`` (recorded in ``body``) when a per-instance rule finds no
    instance in them."""
    limits = policy.limits
    if limits is None:  # callers check; a policy without limits takes nothing
        raise InternalError(f"policy {policy.name} states no release limits")
    found = limits_instance(claims)
    if found is None and limits.per_instance:
        clause = unidentified_clause(claims.tee.value, limits)
        body["reasons"] = [clause.to_json()]
        raise PolicyDenied(_denial_detail(decision, clause), [clause.to_json()])
    rate = limits.rate_per_instance
    return LimitTake(
        instance=found,
        max_releases=limits.max_releases,
        once_per_instance=limits.once_per_instance,
        pin_to_first_instance=limits.pin_to_first_instance,
        rate_releases=None if rate is None else rate.releases,
        rate_per=None if rate is None else rate.per.delta,
    )


def _limit_denial(refused: LimitRefused, limited: Limited, body: dict[str, Any]) -> PolicyDenied:
    """The denial of a release a limit refused, recorded in ``body`` in place of the
    envelope its decision made (never sent)."""
    refusal = Refusal(refused.rule, refused.found, refused.retry_at)
    clause = refusal_clause(refusal, limited.limits, limited.take.instance)
    body.pop("envelope_sha256", None)
    body["reasons"] = [clause.to_json()]
    policy = body["policy"]
    detail = f"policy {policy['name']} v{policy['version']} denied: {describe(clause)}"
    return PolicyDenied(detail, [clause.to_json()])


def _denial_detail(decision: Decision, clause: ClauseResult) -> str:
    return f"policy {decision.policy_name} v{decision.policy_version} denied: {describe(clause)}"


def _kbs_recipient(result: tokens.AttestationResult) -> jwe.Recipient:
    """The key a KBS answer is encrypted to: the token's tee key, as a KBS tee-pubkey."""
    if isinstance(result.tee_key, jwe.Recipient):
        return result.tee_key
    try:
        return kbs_recipient(result.tee_jwk)
    except PublicKeyInvalid as exc:
        raise TokenInvalid(
            f"the token's tee key is not a KBS tee-pubkey ({exc.detail}): a KBS resource is "
            "answered to tokens of a KBS attestation"
        ) from None
