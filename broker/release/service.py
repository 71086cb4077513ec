"""The one orchestrator of the release flow: challenge -> attest -> release (ARCHITECTURE §1).

Ordering rules that make it fail closed:

* **challenge**: a nonce that carries its own expiry and MAC (``broker/release/nonces.py``):
  no database, no HSM.
* **attest**: check the nonce's MAC and expiry (CPU only: a forged or stale nonce costs no
  evidence verification), verify the evidence and its binding (CPU only), sign the token
  (HSM), then in one statement (so one transaction) record the nonce as consumed and append
  the audit record; the token leaves only after that commit. A nonce consumed before makes
  the insert conflict: a replay. A failed attestation consumes its nonce too and is audited
  as a denial; a refused nonce is audited as a denial and consumes nothing.
* **release**: evaluate the policy; on allow have the HSM build the envelope and sign the
  response, then append the audit record (one statement, committed); only then answer. A
  database failure at that point discards the envelope and answers 503.

Each audit append is a single statement outside any explicit transaction, so the chain
head's row lock (``audit_append``) is held only while PostgreSQL commits; held across a
round trip to a busy broker it would make every other release wait in line.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from broker import jose
from broker.errors import (
    CollateralUnavailable,
    DatabaseUnavailable,
    HsmError,
    InternalError,
    KeybrokerError,
    KeyDisabled,
    KeyNotFound,
    NonceReplayed,
    PolicyDenied,
    StoredPolicyInvalid,
    TokenInvalid,
    Unavailable,
)
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import TeeVerifier, verifier_for
from broker.logs import get_logger
from broker.metrics import Children, Metrics
from broker.policy.model import Policy
from broker.release import binding, nonces, tokens
from broker.release.collateral import CollateralResolver
from broker.release.policies import PolicyCache, audit_summary
from broker.runtime import Runtime
from broker.store import audit, challenges
from broker.store.audit import AuditRecord
from broker.timeutil import utcnow
from hsm.custody import WrappedSecret
from hsm.envelope import SealedSecret
from hsm.pubkey import RsaPublicKey, b64url

if TYPE_CHECKING:
    from pkcs11 import Session

log = get_logger("keybroker.release")


# ``verifier_for`` remembered per tee once found (it imports and checks a module); a tee
# without a verifier raises every time, as exceptions are not cached.
_verifier: Callable[[Tee], TeeVerifier] = functools.cache(verifier_for)


def outcome(failure: KeybrokerError | None) -> str:
    """``allow``; ``deny`` when the request was judged and refused; ``error`` when it could
    not be judged or served (HSM, collateral or stored-policy trouble)."""
    if failure is None:
        return "allow"
    if isinstance(
        failure,
        Unavailable | CollateralUnavailable | InternalError | HsmError | StoredPolicyInvalid,
    ):
        return "error"
    return "deny"


def _record(
    now: datetime,
    kind: str,
    failure: KeybrokerError | None,
    request_id: str | None,
    key_name: str | None,
    *,
    body: dict[str, Any],
) -> AuditRecord:
    if failure is not None:
        body["error"] = {"type": failure.type, "detail": failure.detail}
    return AuditRecord(now, kind, outcome(failure), request_id, key_name, body)


@dataclass(frozen=True, slots=True)
class AttestRequest:
    tee: Tee
    evidence: bytes
    tee_jwk: Mapping[str, Any]
    tee_key: RsaPublicKey
    nonce_text: str
    collateral: Mapping[str, bytes]
    request_id: str | None


class ReleaseService:
    def __init__(
        self,
        runtime: Runtime,
        metrics: Metrics,
        collateral: CollateralResolver,
        policies: PolicyCache,
    ) -> None:
        self.runtime = runtime
        self.db = runtime.db
        self.custody = runtime.custody
        self.settings = runtime.settings
        self.metrics = metrics
        self.collateral = collateral
        self.policies = policies
        self.kid = jose.key_id(runtime.custody.signing_public_key)
        self.nonces = nonces.Nonces(
            runtime.custody.nonce_mac_key(), self.settings.challenge_ttl_seconds
        )
        self.issued = tokens.IssuedTokens()
        self._attestations = Children(metrics.attestations)
        self._releases = Children(metrics.releases)

    # --- challenge -------------------------------------------------------------------------

    async def challenge(self, tee: Tee) -> dict[str, str]:
        """A nonce for ``tee``: pure CPU, nothing stored (``broker/release/nonces.py``)."""
        _verifier(tee)  # refuse a tee we cannot verify before issuing anything
        nonce, expires_at = self.nonces.issue(tee.value, utcnow())
        return {
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "expires_at": expires_at.isoformat(),
        }

    # --- attest ----------------------------------------------------------------------------

    async def attest(self, request: AttestRequest) -> dict[str, Any]:
        now = utcnow()
        evidence_sha256 = hashlib.sha256(request.evidence).hexdigest()
        body: dict[str, Any] = {
            "tee": request.tee.value,
            "evidence_sha256": evidence_sha256,
            "tee_pubkey_thumbprint": request.tee_key.thumbprint(),
            "plaintext_in_broker": False,
        }
        live: tuple[bytes, datetime] | None = None  # the nonce and its expiry, once checked
        document: dict[str, Any] | None = None
        token: str | None = None
        issued: tokens.AttestationResult | None = None
        failure: KeybrokerError | None = None
        try:
            nonce = nonces.decode(request.nonce_text)
            live = nonce, self.nonces.check(nonce, request.tee.value, now)
            claims = await self._verify(request, now)
            body["signer"] = claims.signer.to_json()
            body["claims"] = document = claims.document()
            body["binding"] = binding.check_binding(
                claims, nonce, request.nonce_text, request.tee_jwk, request.tee_key
            )
            payload = tokens.payload(
                claims, dict(request.tee_jwk), evidence_sha256, now, self.settings.token_ttl_seconds
            )
            token = await jose.sign(
                payload, jose.TYP_ATTESTATION_RESULT, self.kid, self.custody.sign_digest_async
            )
            issued = tokens.result_of(payload, claims, request.tee_key, now)
            body["token_id"] = issued.token_id
        except DatabaseUnavailable:
            raise  # nothing can be recorded, so nothing is decided: 503
        except KeybrokerError as exc:
            failure = exc

        async with self.db.connection() as conn:
            # One statement consumes the nonce and appends the record, committed before the
            # token leaves. A nonce refused by its MAC or expiry was never consumed; one
            # consumed before (a replay) makes the statement write nothing. Either way the
            # refusal is audited instead and becomes the answer (409).
            consumed = None
            if live is not None:
                consumed = await challenges.consume_and_audit(
                    conn,
                    self.db.q,
                    live[0],
                    request.tee.value,
                    expires_at=live[1],
                    record=_record(now, "attest", failure, request.request_id, None, body=body),
                )
                if consumed is None:
                    failure = NonceReplayed("nonce was already used")
            if consumed is None:
                await audit.append(
                    conn,
                    self.db.q["audit_append"],
                    _record(now, "attest", failure, request.request_id, None, body=body),
                )
        self._attestations(request.tee.value, outcome(failure)).inc()
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

    async def _verify(self, request: AttestRequest, now: datetime) -> Claims:
        verifier = _verifier(request.tee)
        collateral = await self.collateral.resolve(
            request.tee, request.evidence, request.collateral, now
        )
        return verifier.verify(
            request.evidence, collateral, now=now, extra_roots=self.runtime.test_roots
        )

    # --- release ---------------------------------------------------------------------------

    async def release(
        self,
        bearer: str,
        key_name: str,
        presented_jwk: Mapping[str, Any] | None,
        request_id: str | None,
    ) -> dict[str, Any]:
        """Every outcome, a refused token included, is audited before the answer."""
        now = utcnow()
        body: dict[str, Any] = {"plaintext_in_broker": False}
        response: dict[str, Any] | None = None
        failure: KeybrokerError | None = None
        try:
            response = await self._decide_and_seal(bearer, key_name, presented_jwk, now, body)
        except DatabaseUnavailable:
            raise  # nothing can be recorded, so nothing is released: 503
        except KeybrokerError as exc:
            failure = exc
        async with self.db.connection() as conn:  # one statement, committed before we answer
            await audit.append(
                conn,
                self.db.q["audit_append"],
                _record(now, "release", failure, request_id, key_name, body=body),
            )
        self._releases(outcome(failure)).inc()
        if failure is not None:
            raise failure
        if response is None:  # unreachable: no failure means the envelope exists
            raise InternalError("release produced no envelope")
        return response

    async def _decide_and_seal(
        self,
        bearer: str,
        key_name: str,
        presented_jwk: Mapping[str, Any] | None,
        now: datetime,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        """Check the token, the key and its policy, then seal; fills ``body`` as it learns."""
        result = self.issued.read(bearer, self.custody.signing_public_key, now)
        thumbprint = result.tee_key.thumbprint()
        # The claims are recorded once, by the attest record that issued this token (same
        # ``token_id``); the release record names the token, the evidence and the decision.
        body.update(
            {
                "tee": result.claims.tee.value,
                "token_id": result.token_id,
                "evidence_sha256": result.evidence_sha256,
                "tee_pubkey_thumbprint": thumbprint,
            }
        )
        if presented_jwk is not None and dict(presented_jwk) != result.tee_jwk:
            raise TokenInvalid("token was issued for another tee public key")
        context = await self.db.fetchrow("release_context", key_name)
        if context is None:
            raise KeyNotFound(f"no key named {key_name}")
        body["key"] = {"name": context["name"], "version": context["version"]}
        if context["state"] != "active":
            raise KeyDisabled(f"key {key_name} is disabled")
        if context["policy_name"] is None:
            raise PolicyDenied(f"key {key_name} has no release policy bound: deny", [])
        policy = await self._policy(context)
        decision = self.policies.evaluate(policy, result.claims, now)
        body.update(audit_summary(decision))
        if not decision.allow:
            raise decision.to_error()
        response = await self._seal(context, result, thumbprint, now)
        body["envelope_sha256"] = response["envelope_sha256"]
        return response

    async def _policy(self, context: Mapping[str, Any]) -> Policy:
        """The bound policy, compiled: from the cache by digest, else read and checked."""
        digest: str = context["digest"]
        policy = self.policies.cached(digest)
        if policy is not None:
            return policy
        stored = await self.db.fetchrow(
            "policy_version", context["policy_name"], context["policy_version"]
        )
        if stored is None:  # policies are never deleted: fail closed should one vanish
            raise StoredPolicyInvalid(
                f"policy {context['policy_name']} v{context['policy_version']} vanished"
            )
        # ``get`` checks the document against the digest the key is bound to.
        return self.policies.get(stored["document"], digest)

    async def _seal(
        self,
        context: Mapping[str, Any],
        result: tokens.AttestationResult,
        thumbprint: str,
        now: datetime,
    ) -> dict[str, Any]:
        wrapped = WrappedSecret(
            bytes(context["wrapped_blob"]), context["secret_length"], context["kek_label"]
        )

        def seal_and_sign(session: Session) -> tuple[SealedSecret, dict[str, Any], str]:
            # One trip to the token's thread for both: the envelope, then its signature.
            sealed = self.custody.release_to_sync(wrapped, result.tee_key, session)
            envelope = {
                "key": context["name"],
                "version": context["version"],
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

        sealed, envelope, signed = await self.custody.pool.run(seal_and_sign)
        return {
            "envelope": signed,
            **envelope,
            "envelope_sha256": hashlib.sha256(sealed.ciphertext).hexdigest(),
        }
