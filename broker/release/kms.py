"""The KMS operations over the one release orchestrator (docs/kms.md).

The adapter (``broker/api/kms/``) authenticates nothing and decides nothing: it hands this
service the received request and the operation's parsed members. Here:

* **authentication** (:meth:`KmsService.authenticate`): SigV4 checked for form, scope and
  time, the access key's secret read back from its seal in the HSM (kept per worker, never
  logged), the signature recomputed over the received request, then one statement that
  requires the access key to be live and records the signature as used (a replay on any
  worker or replica is refused). A request refused before its signature verified is counted
  and audited in aggregate, as an unverified token is; after, it is audited alone.
* **a key's use** (:meth:`KmsService.use_key`) is settled by :meth:`ReleaseService.settle`
  with a judgement of this protocol: the key's bound policy must have a ``kms`` member, the
  access key must be one it names (when it names any), and plaintext leaves only to an
  attested ``Recipient`` admitted by the policy's TEE section, or to the signed caller when the
  policy sets ``kms.insecure_allow_unattested``. A Recipient is a Nitro document, fresh by its
  timestamp, or an evidence bundle of any other TEE, fresh by a challenge nonce it binds and
  consumes once (:meth:`KmsService.recipient_or_refusal`). The context cache, the conditional append
  and the audit record are the native release's.
* **exposure**: ``Encrypt`` uses the key inside the token on the caller's own plaintext; every
  other operation on a key has a data key or a decrypted plaintext in broker memory (no
  PKCS#11 2.40 token here can build the CMS envelope or the GCM blob of a key object inside
  itself, ``hsm/cms.py``), so it runs only for keys whose exposure is ``broker-memory``, and
  its record says ``plaintext_in_broker: true`` and to whom the plaintext went.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker import jcs
from broker.errors import (
    AccessKeyRevoked,
    AccessKeyUnknown,
    BindingMismatch,
    DatabaseUnavailable,
    ExposureRefused,
    IncorrectKey,
    InternalError,
    KeybrokerError,
    KeyNotFound,
    KmsUseRefused,
    NonceReplayed,
    PublicKeyInvalid,
    SignatureReplayed,
    Unrecognised,
)
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import verifier_for
from broker.hsmcalls import hsm_errors
from broker.lru import Lru
from broker.names import checked_name
from broker.policy.model import Policy
from broker.release import binding, nonces, sigv4
from broker.release.origin import Origin
from broker.release.service import Judge, Limited, ReleaseService
from broker.store import access_keys, keys
from broker.store.contexts import ReleaseContext
from broker.store.database import Database
from broker.timeutil import iso, utcnow
from hsm import cms, kmsblob
from hsm.custody import WrappedSecret
from hsm.jwe import Exposure
from hsm.pubkey import RsaPublicKey

#: The aggregate audit records' name for this endpoint.
KMS_ENDPOINT = "kms"
AUDIT_KIND = "kms"
SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
#: DescribeKey's KeyState of a key in each broker state (a destroyed key is not found).
KEY_STATES = {"active": "Enabled", "disabled": "Disabled", "pending-deletion": "PendingDeletion"}
#: RSA sizes a Recipient's key may have: the Nitro Enclaves SDK makes RSA-2048 keys, which
#: AWS KMS accepts; 3072 and 4096 as the native path.
RECIPIENT_RSA_BITS = (2048, 3072, 4096)
#: Access keys' secrets remembered per worker (revocation is checked by the database on every
#: request, so a remembered secret never outlives its key's revocation).
SECRETS_REMEMBERED = 1024

_KEY_ID_PREFIXES = ("arn:aws:kms:",)


class Operation(StrEnum):
    ENCRYPT = "Encrypt"
    DECRYPT = "Decrypt"
    GENERATE_DATA_KEY = "GenerateDataKey"
    GENERATE_DATA_KEY_WITHOUT_PLAINTEXT = "GenerateDataKeyWithoutPlaintext"
    GENERATE_RANDOM = "GenerateRandom"
    DESCRIBE_KEY = "DescribeKey"
    LIST_KEYS = "ListKeys"
    LIST_ALIASES = "ListAliases"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who signed a request: an access key the broker issued, live, signature fresh."""

    access_key_id: str
    name: str
    region: str

    def audit(self) -> dict[str, str]:
        return {"access_key_id": self.access_key_id, "access_key": self.name}


@dataclass(frozen=True, slots=True)
class EvidenceBundle:
    """A ``Recipient`` of a guest that is not a Nitro enclave: its evidence, which binds
    ``public_key_der`` and the challenge ``nonce_text`` as the native attestation does
    (docs/kms.md, "Evidence bundles"; read by ``broker/api/kms/bundle.py``)."""

    tee: Tee
    evidence: bytes
    public_key_der: bytes
    nonce_text: str
    collateral: Mapping[str, bytes]


#: What a Recipient's ``AttestationDocument`` carries: a Nitro document, or a bundle.
RecipientEvidence = bytes | EvidenceBundle


@dataclass(frozen=True, slots=True)
class Recipient:
    """Verified evidence and the RSA key it binds (a Nitro document's ``public_key``, or a
    bundle's key bound with its nonce)."""

    claims: Claims
    key: rsa.RSAPublicKey
    evidence_sha256: str
    binding: Any = None
    """What the bundle's binding check says (None for a Nitro document, which binds its
    ``public_key`` field and is fresh by its timestamp)."""

    def audit(self) -> dict[str, Any]:
        spki = self.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        audited = {
            "tee": self.claims.tee.value,
            "evidence_sha256": self.evidence_sha256,
            "public_key_sha256": hashlib.sha256(spki).hexdigest(),
            "signer": self.claims.signer.to_json(),
            "claims": self.claims.document(),
        }
        if self.binding is not None:
            audited["binding"] = self.binding
        return audited


def recipient_key(spki_der: bytes, where: str) -> rsa.RSAPublicKey:
    """The RSA key of the DER SubjectPublicKeyInfo ``spki_der`` (``where`` names it in the
    refusal): ``BindingMismatch`` when it is not one, ``PublicKeyInvalid`` for a key
    RSAES_OAEP_SHA_256 is not made to here."""
    try:
        key = serialization.load_der_public_key(spki_der)
    except ValueError:
        raise BindingMismatch(f"{where} is not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size not in RECIPIENT_RSA_BITS:
        raise PublicKeyInvalid(
            f"{where} must be an RSA key of {', '.join(map(str, RECIPIENT_RSA_BITS))} bits "
            "for RSAES_OAEP_SHA_256"
        )
    return key


def key_name_of(key_id: str) -> str:
    """The broker key a KMS ``KeyId`` names: ``name``, ``alias/name``, or a key or alias ARN
    (``arn:aws:kms:<region>:<account>:key/name``); every key answers to ``alias/<name>``."""
    text = key_id
    if text.startswith(_KEY_ID_PREFIXES):
        parts = text.split(":", 5)
        if len(parts) != 6:
            raise KeyNotFound(f"KeyId {key_id[:160]!r} is not a key or alias ARN")
        text = parts[5]
        if text.startswith("key/"):
            text = text[len("key/") :]
    if text.startswith("alias/"):
        text = text[len("alias/") :]
    try:
        return checked_name(text, "key")
    except KeybrokerError:
        raise KeyNotFound(f"no key answers to KeyId {key_id[:160]!r}") from None


def encryption_context(context: Mapping[str, str] | None) -> bytes:
    """The canonical form bound into a blob: RFC 8785 JSON of the string map (``{}`` when
    none was given: AWS treats an absent context and an empty one alike)."""
    return jcs.canonicalize(dict(context or {}))


class KmsService:
    def __init__(
        self,
        release: ReleaseService,
        db: Database,
        *,
        skew: timedelta,
        account: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.release = release
        self.db = db
        self.custody = release.custody
        self.skew = skew
        self.account = account
        self.clock = clock
        self._secrets: Lru[str, tuple[str, bytes]] = Lru(SECRETS_REMEMBERED)

    # --- authentication --------------------------------------------------------------------

    async def authenticate(self, request: sigv4.ReceivedRequest, origin: Origin) -> Caller:
        """The live access key that signed ``request``, whose signature is now used up."""
        now = self.clock()
        try:
            signed = sigv4.parse(request.headers, now, self.skew)
            name, secret = await self._secret(signed.access_key_id)
            sigv4.verify(signed, request, secret)
        except Unrecognised as exc:
            self.release.unauthenticated.refused(origin, KMS_ENDPOINT, exc)
            raise
        acceptance = await access_keys.consume_signature(
            self.db, signed.access_key_id, signed.replay_key(), signed.at + self.skew
        )
        caller = Caller(signed.access_key_id, name, signed.region)
        if acceptance is access_keys.Acceptance.ACCEPTED:
            return caller
        failure: KeybrokerError
        if acceptance is access_keys.Acceptance.KEY_REVOKED:
            self._secrets.pop(signed.access_key_id)
            failure = AccessKeyRevoked(f"access key {signed.access_key_id} was revoked")
        else:
            failure = SignatureReplayed(
                "this signature was accepted before: a signed request is accepted once"
            )
        await self.release.conclude(
            now,
            AUDIT_KIND,
            failure,
            origin,
            key_name=None,
            body={"protocol": "kms", **caller.audit()},
        )
        raise failure  # conclude raised it already; this keeps the type checker informed

    async def _secret(self, access_key_id: str) -> tuple[str, bytes]:
        remembered = self._secrets.get(access_key_id)
        if remembered is not None:
            return remembered
        stored = await access_keys.get(self.db, access_key_id)
        if stored is None:
            raise AccessKeyUnknown(
                "The security token included in the request is invalid: no such access key"
            )
        sealed = stored.sealed
        with hsm_errors():
            opened = await self.custody.pool.run(
                lambda session: self.custody.open_sealed_sync(sealed, session)
            )
        try:
            value = (stored.name, bytes(opened))
        finally:
            opened[:] = bytes(len(opened))
        if not stored.revoked:  # a revoked key's requests are refused after verification
            self._secrets.put(access_key_id, value)
        return value

    # --- recipients ------------------------------------------------------------------------

    def verify_recipient(self, document: bytes, now: datetime) -> Recipient:
        """The attestation document verified to its pinned root at ``now``, and the RSA key
        in its ``public_key`` field (the recipient of the answer)."""
        claims = verifier_for(Tee.NITRO).verify(
            document, {}, now=now, extra_roots=self.release.runtime.test_roots
        )
        evidence_time = claims.evidence_time
        if evidence_time is not None and abs(now - evidence_time) > self.skew:
            raise BindingMismatch(
                f"the attestation document was made at {iso(evidence_time, zulu=True)}, more than "
                f"{int(self.skew.total_seconds())} s from now: a Recipient document is fresh"
            )
        value = claims.fields.get("public_key")
        if value is None:
            raise BindingMismatch(
                "the attestation document has no public_key: the Recipient's key is the "
                "document's public_key field (DER SubjectPublicKeyInfo of an RSA key)"
            )
        try:
            spki = bytes.fromhex(str(value))
        except ValueError:
            spki = b""
        key = recipient_key(spki, "the attestation document's public_key")
        return Recipient(claims, key, hashlib.sha256(document).hexdigest())

    async def recipient_or_refusal(
        self,
        document: RecipientEvidence | None,
        now: datetime,
        origin: Origin,
        key_name: str | None,
        fields: dict[str, Any],
    ) -> Recipient | None:
        """The verified recipient of ``document`` (None without one); a document that does
        not verify is audited as this operation's refusal."""
        if document is None:
            return None
        if isinstance(document, EvidenceBundle):
            return await self._bundle_recipient(document, now, origin, key_name, fields)
        try:
            return self.verify_recipient(document, now)
        except KeybrokerError as exc:
            fields["recipient"] = {"evidence_sha256": hashlib.sha256(document).hexdigest()}
            await self.release.conclude(
                now, AUDIT_KIND, exc, origin, key_name=key_name, body=fields
            )
            raise

    async def _bundle_recipient(
        self,
        bundle: EvidenceBundle,
        now: datetime,
        origin: Origin,
        key_name: str | None,
        fields: dict[str, Any],
    ) -> Recipient:
        """The recipient of an evidence bundle, its nonce consumed (docs/kms.md, "Evidence
        bundles"). As at the native attest: the nonce is checked (MAC for the bundle's tee,
        expiry) before the evidence costs a verification; then the evidence is verified and
        its binding of the bundle's key and nonce checked; then the nonce is consumed in the
        statement that appends a record: an ``attest`` record (``protocol: kms``) when the
        evidence stands, after which the key's use is decided and audited as any KMS
        request's; else this request's refusal. A consumed nonce is refused as a replay."""
        evidence_sha256 = hashlib.sha256(bundle.evidence).hexdigest()
        fields["recipient"] = {"tee": bundle.tee.value, "evidence_sha256": evidence_sha256}
        live: tuple[bytes, datetime] | None = None
        recipient: Recipient | None = None
        failure: KeybrokerError | None = None
        try:
            nonce = nonces.decode(bundle.nonce_text)
            expires_at = self.release.nonces.check(nonce, bundle.tee.value, now)
            if self.release.consumed.get(nonce):
                raise NonceReplayed("nonce was already used")
            live = nonce, expires_at
            key = recipient_key(bundle.public_key_der, "the bundle's public_key")
            claims = await self.release.verify_evidence(
                bundle.tee, bundle.evidence, bundle.collateral, now
            )
            numbers = key.public_numbers()
            bound = RsaPublicKey(numbers.n, numbers.e)
            rule = binding.check_binding(claims, nonce, bundle.nonce_text, bound.jwk(), bound)
            recipient = Recipient(claims, key, evidence_sha256, {"rule": rule})
        except DatabaseUnavailable:
            raise  # nothing can be recorded, so nothing is decided: 503
        except KeybrokerError as exc:
            failure = exc
        if live is None:  # refused before the nonce was known to be this broker's
            return await self._refused(failure, now, origin, key_name, fields)
        nonce, expires_at = live
        if failure is None and recipient is not None:
            fields["recipient"] = recipient.audit()
            attested = {key: value for key, value in fields.items() if key != "recipient"}
            attested.update(recipient.audit())
            if await self.release.consume_nonce(
                nonce,
                bundle.tee.value,
                expires_at,
                now=now,
                kind="attest",
                failure=None,
                origin=origin,
                key_name=None,
                body=attested,
            ):
                return recipient
        elif await self.release.consume_nonce(  # a refusal consumes it, as a failed attest does
            nonce,
            bundle.tee.value,
            expires_at,
            now=now,
            kind=AUDIT_KIND,
            failure=failure,
            origin=origin,
            key_name=key_name,
            body=fields,
        ):
            return await self._refused(failure, now, origin, key_name, None)
        replayed = NonceReplayed("nonce was already used")
        return await self._refused(replayed, now, origin, key_name, fields)

    async def _refused(
        self,
        failure: KeybrokerError | None,
        now: datetime,
        origin: Origin,
        key_name: str | None,
        fields: dict[str, Any] | None,
    ) -> NoReturn:
        """Audit ``failure`` with ``fields`` (None: audited already), then raise it."""
        if failure is None:  # unreachable: every path here has a refusal
            failure = InternalError("an evidence bundle was neither refused nor admitted")
        if fields is not None:
            await self.release.conclude(
                now, AUDIT_KIND, failure, origin, key_name=key_name, body=fields
            )
        raise failure

    # --- a key's use -----------------------------------------------------------------------

    def judge(
        self, caller: Caller, recipient: Recipient | None, plaintext_to_caller: bool
    ) -> Judge:
        """This protocol's judgement of a request on the key's bound policy. An attested
        request (a ``Recipient``) is judged on its claims as a native release, release limits
        included; an unattested one on a key whose policy states limits is refused, since
        the limits count hardware identities and the caller proved none."""
        attested = None if recipient is None else self.release.claims_judge(recipient.claims)

        def judge(policy: Policy, now: datetime, body: dict[str, Any]) -> Limited | None:
            body["policy"] = {
                "name": policy.name,
                "version": policy.version,
                "digest": policy.digest(),
            }
            use = policy.kms
            where = f"policy {policy.name} v{policy.version}"
            if use is None:
                raise KmsUseRefused(f"{where} has no kms member: the key is not served over KMS")
            if use.access_keys is not None and caller.name not in use.access_keys:
                raise KmsUseRefused(
                    f"access key {caller.name} is not among {where}'s kms.access_keys"
                )
            if attested is not None:
                return attested(policy, now, body)
            if policy.limits is not None:
                raise KmsUseRefused(
                    f"{where} states release limits, which count releases per hardware "
                    "identity: a request without a Recipient proves none, so every use of the "
                    "key over KMS needs a Recipient (an attestation document)"
                )
            if plaintext_to_caller and not use.insecure_allow_unattested:
                raise KmsUseRefused(
                    f"without a Recipient the plaintext would go to a caller no evidence "
                    f"vouches for, and {where} does not set kms.insecure_allow_unattested: send "
                    "a Recipient (an attestation document) to receive CiphertextForRecipient"
                )
            return None

        return judge

    async def use_key(
        self,
        caller: Caller,
        operation: Operation,
        key_name: str,
        origin: Origin,
        *,
        recipient: Recipient | None,
        plaintext_to_caller: bool,
        work: Callable[[ReleaseContext, dict[str, Any]], Awaitable[dict[str, Any]]],
        fields: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """Judge, run ``work`` (which fills the answer and the record's exposure) and audit."""
        if recipient is not None:
            fields["recipient"] = recipient.audit()

        async def seal(
            context: ReleaseContext, now: datetime, body: dict[str, Any]
        ) -> dict[str, Any]:
            return await work(context, body)

        return await self.release.settle(
            key_name,
            now,
            fields,
            origin,
            judge=self.judge(caller, recipient, plaintext_to_caller),
            seal=seal,
            kind=AUDIT_KIND,
        )

    def fields(self, caller: Caller, operation: Operation) -> dict[str, Any]:
        """The audit body every record of ``operation`` starts with."""
        return {
            "protocol": "kms",
            "operation": operation.value,
            **caller.audit(),
            "plaintext_in_broker": False,
        }

    @staticmethod
    def key_name(key_id: str) -> str:
        return key_name_of(key_id)

    def key_arn(self, caller: Caller, name: str) -> str:
        return f"arn:aws:kms:{caller.region}:{self.account}:key/{name}"

    # --- operations ------------------------------------------------------------------------

    async def encrypt(
        self,
        caller: Caller,
        origin: Origin,
        key_id: str,
        plaintext: bytes,
        context: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        now = self.clock()
        name = key_name_of(key_id)
        bound = encryption_context(context)
        fields = self.fields(caller, Operation.ENCRYPT)
        # The caller's own plaintext: the key is used inside the token and never leaves it.
        fields["plaintext_to"] = "none"

        async def work(context_: ReleaseContext, body: dict[str, Any]) -> dict[str, Any]:
            header = kmsblob.BlobHeader(context_.name, context_.version)
            wrapped = _wrapped(context_)
            with hsm_errors():
                blob = await self.custody.pool.run(
                    lambda s: self.custody.kms_encrypt_sync(wrapped, header, plaintext, bound, s)
                )
            return {
                "CiphertextBlob": blob,
                "KeyId": self.key_arn(caller, context_.name),
                "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
                "envelope_sha256": hashlib.sha256(blob).hexdigest(),
            }

        return await self.use_key(
            caller,
            Operation.ENCRYPT,
            name,
            origin,
            recipient=None,
            plaintext_to_caller=False,
            work=work,
            fields=fields,
            now=now,
        )

    async def decrypt(
        self,
        caller: Caller,
        origin: Origin,
        *,
        blob: bytes,
        key_id: str | None,
        context: Mapping[str, str] | None,
        document: RecipientEvidence | None,
    ) -> dict[str, Any]:
        now = self.clock()
        fields = self.fields(caller, Operation.DECRYPT)
        with hsm_errors():
            parsed = kmsblob.parse(blob)
        name = parsed.header.key_name
        if key_id is not None and key_name_of(key_id) != name:
            raise IncorrectKey(
                f"the ciphertext was made with key {name}, not the KeyId {key_id[:160]!r}"
            )
        recipient = await self.recipient_or_refusal(document, now, origin, name, fields)
        bound = encryption_context(context)
        fields["plaintext_to"] = "caller" if recipient is None else "recipient"

        async def work(context_: ReleaseContext, body: dict[str, Any]) -> dict[str, Any]:
            _require_broker_memory(context_, self.custody.jwe_support.missing_for_cms())
            if parsed.header.key_version > context_.version:
                raise KeyNotFound(f"key {name} has no version {parsed.header.key_version}")
            # Blobs name the version that made them; the key's versions share one secret
            # history in the store only through their own rows, so a blob of an older version
            # is opened with that version's secret.
            wrapped = await self._version(context_, parsed.header.key_version)
            with hsm_errors():
                plaintext = await self.custody.pool.run(
                    lambda s: self.custody.kms_decrypt_sync(wrapped, parsed, bound, s)
                )
            try:
                answer = self._deliver(plaintext, recipient, body)
            finally:
                plaintext[:] = bytes(len(plaintext))
            return {
                "KeyId": self.key_arn(caller, name),
                "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
                "envelope_sha256": hashlib.sha256(blob).hexdigest(),
                **answer,
            }

        return await self.use_key(
            caller,
            Operation.DECRYPT,
            name,
            origin,
            recipient=recipient,
            plaintext_to_caller=recipient is None,
            work=work,
            fields=fields,
            now=now,
        )

    async def generate_data_key(
        self,
        caller: Caller,
        origin: Origin,
        *,
        key_id: str,
        length: int,
        context: Mapping[str, str] | None,
        document: RecipientEvidence | None,
        with_plaintext: bool,
    ) -> dict[str, Any]:
        now = self.clock()
        operation = (
            Operation.GENERATE_DATA_KEY
            if with_plaintext
            else Operation.GENERATE_DATA_KEY_WITHOUT_PLAINTEXT
        )
        fields = self.fields(caller, operation)
        name = key_name_of(key_id)
        recipient = await self.recipient_or_refusal(document, now, origin, name, fields)
        bound = encryption_context(context)
        if not with_plaintext:
            fields["plaintext_to"] = "none"
        else:
            fields["plaintext_to"] = "caller" if recipient is None else "recipient"

        async def work(context_: ReleaseContext, body: dict[str, Any]) -> dict[str, Any]:
            _require_broker_memory(context_, self.custody.jwe_support.missing_for_cms())
            header = kmsblob.BlobHeader(context_.name, context_.version)
            wrapped = _wrapped(context_)
            with hsm_errors():
                data_key, blob = await self.custody.pool.run(
                    lambda s: self.custody.kms_data_key_sync(wrapped, header, length, bound, s)
                )
            try:
                if with_plaintext:
                    answer = self._deliver(data_key, recipient, body)
                else:
                    body["plaintext_in_broker"] = True
                    answer = {}
            finally:
                data_key[:] = bytes(len(data_key))
            return {
                "CiphertextBlob": blob,
                "KeyId": self.key_arn(caller, context_.name),
                "envelope_sha256": hashlib.sha256(blob).hexdigest(),
                **answer,
            }

        return await self.use_key(
            caller,
            operation,
            name,
            origin,
            recipient=recipient,
            plaintext_to_caller=with_plaintext and recipient is None,
            work=work,
            fields=fields,
            now=now,
        )

    async def generate_random(
        self, caller: Caller, origin: Origin, length: int, document: RecipientEvidence | None
    ) -> dict[str, Any]:
        """Random bytes from the token's generator; no key, so no policy: to the caller, or
        to a verified Recipient. Audited either way."""
        now = self.clock()
        fields = self.fields(caller, Operation.GENERATE_RANDOM)
        recipient = await self.recipient_or_refusal(document, now, origin, None, fields)
        fields["plaintext_to"] = "caller" if recipient is None else "recipient"
        if recipient is not None:
            fields["recipient"] = recipient.audit()
        with hsm_errors():
            random = await self.custody.pool.run(lambda s: self.custody.random_sync(length, s))
        try:
            answer = self._deliver(random, recipient, fields)
        finally:
            random[:] = bytes(len(random))
        return await self.release.conclude(
            now, AUDIT_KIND, None, origin, key_name=None, body=fields, response=answer
        )

    def _deliver(
        self, plaintext: bytearray, recipient: Recipient | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        """``Plaintext`` for the caller, or ``CiphertextForRecipient`` (never both, and the
        latter only when a Recipient was sent); fills the record's exposure."""
        body["plaintext_in_broker"] = True
        if recipient is None:
            return {"Plaintext": bytes(plaintext)}
        envelope = cms.seal(plaintext, recipient.key)
        body.update(envelope.exposure())
        return {
            "CiphertextForRecipient": envelope.der,
            "envelope_sha256": hashlib.sha256(envelope.der).hexdigest(),
        }

    async def _version(self, context: ReleaseContext, version: int) -> WrappedSecret:
        if version == context.version:
            return _wrapped(context)
        older = await keys.wrapped_version(self.db, context.name, version)
        if older is None:
            raise KeyNotFound(f"key {context.name} has no version {version}")
        return older

    # --- key metadata ----------------------------------------------------------------------

    async def describe_key(self, caller: Caller, key_id: str) -> dict[str, Any]:
        name = key_name_of(key_id)
        context = await self.release.store.context(name)
        if (
            context is None
            or context.state == "destroyed"
            or not await self._served(caller, context)
        ):
            raise KeyNotFound(f"no key answers to KeyId {key_id[:160]!r} over KMS")
        return {"KeyMetadata": self._metadata(caller, context)}

    async def served_keys(self, caller: Caller) -> list[ReleaseContext]:
        """The keys this caller may use over KMS, by name."""
        served = []
        for info in await keys.list_keys(self.db):
            context = await self.release.store.context(info.name)
            if context is None or context.state == "destroyed":  # gone, as in AWS KMS
                continue
            if await self._served(caller, context):
                served.append(context)
        return served

    async def _served(self, caller: Caller, context: ReleaseContext) -> bool:
        if context.policy is None:
            return False
        policy = await self.release.bound_policy(context.policy)
        use = policy.kms
        return use is not None and (use.access_keys is None or caller.name in use.access_keys)

    def _metadata(self, caller: Caller, context: ReleaseContext) -> dict[str, Any]:
        enabled = context.state == "active"
        return {
            "AWSAccountId": self.account,
            "KeyId": context.name,
            "Arn": self.key_arn(caller, context.name),
            "Enabled": enabled,
            "KeyState": KEY_STATES.get(context.state, "Disabled"),
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeySpec": SYMMETRIC_DEFAULT,
            "CustomerMasterKeySpec": SYMMETRIC_DEFAULT,
            "EncryptionAlgorithms": [SYMMETRIC_DEFAULT],
            "KeyManager": "CUSTOMER",
            "Origin": "EXTERNAL",
            "Description": f"keybroker key {context.name} (version {context.version})",
        }


def _wrapped(context: ReleaseContext) -> WrappedSecret:
    return WrappedSecret(context.wrapped_blob, context.secret_length, context.kek_label)


def _require_broker_memory(context: ReleaseContext, missing: list[str]) -> None:
    if context.exposure != Exposure.BROKER_MEMORY:
        raise ExposureRefused(
            f"key {context.name} has exposure {context.exposure}: its plaintext never leaves "
            "the HSM unwrapped, and this operation puts a data key or a decrypted plaintext in "
            f"broker memory (the token lacks {'; '.join(missing)}); a key custodian may set "
            "its exposure to broker-memory"
        )
