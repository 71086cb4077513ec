"""Key custody on a PKCS#11 token: KEKs, sealed import, HSM-sealed release, broker signing.

Everything secret stays inside the token:

* The KEK is an AES-256 token object, sensitive and never extractable, usable only to wrap
  and unwrap. Rotation adds ``keybroker-kek-v<N+1>`` and keeps older versions for unwrapping;
  :meth:`Custody.rewrap` re-seals a blob under another KEK inside the token (unwrap into a
  session object, wrap, destroy), and :meth:`Custody.destroy_kek` retires an old one.
* :meth:`Custody.import_secret` is the one moment a customer secret is in broker memory: it is
  turned into a session object and wrapped under the current KEK at once (RFC 5649 KWP).
* :meth:`Custody.release_to` unwraps the blob into a session object and re-wraps it with two
  ``C_WrapKey`` calls (see ``hsm/envelope.py``), so the plaintext never enters Python. With a
  secret cache (``hsm/secretcache.py``), the unwrapped session object is kept, per session,
  for the next release of the same blob, within a bound on count and age.
* The broker signing key is an EC P-256 token key pair; ``CKM_ECDSA`` signs a digest computed
  outside, and returns ``r || s``, which is the JWS ES256 signature format (RFC 7518 §3.4).
* Each session signs and unwraps with its own session copy of the signing key and of each KEK
  it uses, made inside the token and renewed every 10 s (``hsm/keycopies.py``): SoftHSM signs
  and unwraps with a session object a quarter faster than with a token object.
* The challenge nonces' MAC key is derived once at start from a token key made for nothing
  else (``hsm/noncekey.py``), the same in every process on the token.

:meth:`Custody.ensure_ready` provisions the token (``hsm/provision.py``: the first KEK, the
signing key and the nonce key where absent, duplicates refused), probes the OAEP hash, and
reads what every release uses: the signing public key and the derived nonce MAC key.

Session objects (unwrapped secrets, ephemeral AES keys, imported tee public keys) are
destroyed in ``finally`` blocks on every path, except unwrapped secrets the secret cache
owns and the key copies: their owners destroy them when they leave, and they die with their
session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass

from hsm import byok, jwe, kmsblob
from hsm.envelope import OaepHash, SealedSecret
from hsm.errors import BlobInvalid, HsmUnavailable, KekNotFound, SecretLengthInvalid
from hsm.keycopies import KeyCopyLimits, SessionKeys
from hsm.noncekey import CONSOLE_SESSION_LABEL, derive_key, derive_nonce_mac_key
from hsm.provision import (
    KEK_LABEL,
    SIGNING_KEY_LABEL,
    find_one,
    generate_kek,
    kek_label,
    kek_versions,
    p256_public_key,
    provision,
)
from hsm.pubkey import RsaPublicKey
from hsm.redact import Secret, SecretBytes
from hsm.secretcache import SecretCache, SecretCacheLimits, SecretCacheStats, cache_key
from hsm.sessions import SessionPool

# Where the secret cache and the key copies sit in a session's memo (the session pool's
# per-thread cache), so that they are forgotten when the session pool closes the session.
_UNWRAPPED_SLOT = "/unwrapped-secrets"
_KEYS_SLOT = "/session-keys"
MIN_SECRET_BYTES = 1
MAX_SECRET_BYTES = 8192

# RFC 3394/5649 wrapping needs the wrapped object extractable; SENSITIVE keeps its value out of
# C_GetAttributeValue. Session objects only (TOKEN false): they vanish with the session.
_TRANSIENT_SECRET = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: True,
}

_OAEP_PARAMS = {
    OaepHash.SHA256: (Mechanism.SHA256, MGF.SHA256, None),
    OaepHash.SHA1: (Mechanism.SHA_1, MGF.SHA1, None),
}


@dataclass(frozen=True, slots=True)
class WrappedSecret:
    """A customer secret sealed under a KEK: safe to store in the database."""

    blob: bytes
    secret_length: int
    kek_label: str

    def __repr__(self) -> str:
        return (
            f"WrappedSecret(kek_label={self.kek_label!r}, secret_length={self.secret_length}, "
            f"blob=<{len(self.blob)} bytes>)"
        )


class Custody:
    """The broker's operations on its token. Methods run on the pool's threads."""

    def __init__(
        self,
        pool: SessionPool,
        secret_cache: SecretCacheLimits | None = None,
        key_copies: KeyCopyLimits | None = None,
    ) -> None:
        self.pool = pool
        self.secret_cache = secret_cache or SecretCacheLimits()
        """Unwrapped secrets kept per session; size 0 (the default) unwraps every release."""
        self.key_copies = key_copies or KeyCopyLimits()
        """Session copies of the signing key and KEKs (on by default, renewed every 10 s)."""
        self.oaep_hash: OaepHash = OaepHash.SHA1
        self.jwe_support = jwe.InTokenSupport(gcm_wrap=False, oaep_sha256_wrap=False)
        """What of a KBS JWE the module could make inside the token (probed at start)."""
        self._signing_public: ec.EllipticCurvePublicKey | None = None
        self._nonce_key: SecretBytes | None = None
        self._console_key: SecretBytes | None = None

    @classmethod
    def open(
        cls,
        module_path: str,
        token_label: str,
        user_pin: Secret,
        threads: int,
        secret_cache: SecretCacheLimits | None = None,
        *,
        key_copies: KeyCopyLimits | None = None,
    ) -> Custody:
        pool = SessionPool(module_path, token_label, user_pin, threads)
        return cls(pool, secret_cache, key_copies)

    def close(self) -> None:
        self.pool.close()

    # --- set-up ----------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        """Create the first KEK, the signing key and the nonce key if absent, and refuse
        duplicates; probe OAEP and in-token JWE; cache the signing public key; derive the
        nonce MAC key and the console's session key."""
        self.pool.run_sync(provision)
        self.oaep_hash = self.pool.run_sync(_probe_oaep_hash)
        oaep_sha256 = self.oaep_hash is OaepHash.SHA256
        self.jwe_support = self.pool.run_sync(lambda s: jwe.probe(s, oaep_sha256))
        self._signing_public = self.pool.run_sync(_read_signing_public_key)
        self._nonce_key = self.pool.run_sync(derive_nonce_mac_key)
        self._console_key = self.pool.run_sync(lambda s: derive_key(s, CONSOLE_SESSION_LABEL))

    def nonce_mac_key(self) -> SecretBytes:
        """The challenge nonces' MAC key, derived at :meth:`ensure_ready` (for
        ``broker/release/nonces.py`` only; its ``repr`` is redacted)."""
        if self._nonce_key is None:
            raise HsmUnavailable("custody not ready: call ensure_ready() first")
        return self._nonce_key

    def console_session_key(self) -> SecretBytes:
        """The key sealing the console's session cookies, derived at :meth:`ensure_ready`
        (for ``broker/admin/sessions.py`` only; its ``repr`` is redacted)."""
        if self._console_key is None:
            raise HsmUnavailable("custody not ready: call ensure_ready() first")
        return self._console_key

    # --- KEKs ------------------------------------------------------------------------------

    def kek_versions(self) -> list[int]:
        return self.pool.run_sync(kek_versions)

    def current_kek_label(self) -> str:
        versions = self.kek_versions()
        if not versions:
            raise KekNotFound("the token holds no KEK; run the broker once to create it")
        return kek_label(max(versions))

    def has_kek(self, label: str) -> bool:
        """Whether the token holds the KEK ``label`` now (a token lookup, never a copy)."""
        if KEK_LABEL.fullmatch(label) is None:
            return False
        return self.pool.run_sync(lambda s: find_one(s, ObjectClass.SECRET_KEY, label) is not None)

    def rotate_kek(self) -> str:
        """Create the next KEK version and return its label; older versions stay usable."""

        def rotate(session: pkcs11.Session) -> str:
            versions = kek_versions(session)
            version = max(versions, default=0) + 1
            generate_kek(session, version)
            return kek_label(version)

        return self.pool.run_sync(rotate)

    def rewrap(self, blobs: list[WrappedSecret], to_label: str) -> list[WrappedSecret]:
        """Each of ``blobs`` sealed under the KEK ``to_label`` instead, in one session: the
        secret is unwrapped into a session object (sensitive) and wrapped again with RFC 5649
        KWP, never entering this process. SoftHSM's padded KWP length (``hsm/``'s module
        docstring) is carried over: the true length stays in ``secret_length``."""

        def reseal(session: pkcs11.Session) -> list[WrappedSecret]:
            sealed = []
            for wrapped in blobs:
                secret = self._unwrap(session, wrapped)
                try:
                    # Looked up each time: a session's key copy lives 10 s (keycopies.py),
                    # and a batch on a busy token may take longer.
                    target = self._kek(session, to_label)
                    blob = target.wrap_key(secret, mechanism=Mechanism.AES_KEY_WRAP_PAD)
                finally:
                    secret.destroy()
                sealed.append(WrappedSecret(blob, wrapped.secret_length, to_label))
            return sealed

        return self.pool.run_sync(reseal)

    def destroy_kek(self, label: str) -> None:
        """Destroy the token KEK ``label`` (the caller made sure nothing is sealed under it).
        Each session's copy of it lives up to 10 s more, and secrets it unwrapped stay in
        secret caches until they expire (``hsm/keycopies.py``, ``hsm/secretcache.py``)."""
        if KEK_LABEL.fullmatch(label) is None:
            raise KekNotFound(f"'{label}' is not a KEK label")

        def destroy(session: pkcs11.Session) -> None:
            key = find_one(session, ObjectClass.SECRET_KEY, label)
            if key is None:
                raise KekNotFound(f"no KEK labelled '{label}' on the token")
            key.destroy()

        self.pool.run_sync(destroy)

    # --- import and release ----------------------------------------------------------------

    def import_secret(self, secret: bytes) -> WrappedSecret:
        """Seal ``secret`` under the current KEK; the only time plaintext is in this process."""
        if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
            raise SecretLengthInvalid(
                f"secret length {len(secret)} outside {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes"
            )
        label = self.current_kek_label()

        def seal(session: pkcs11.Session) -> WrappedSecret:
            kek = self._kek(session, label)
            transient = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                    Attribute.VALUE: secret,
                    **_TRANSIENT_SECRET,
                }
            )
            try:
                blob = kek.wrap_key(transient, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            finally:
                transient.destroy()
            return WrappedSecret(blob=blob, secret_length=len(secret), kek_label=label)

        return self.pool.run_sync(seal)

    def make_wrapping_key(self, key_id: str) -> RsaPublicKey:
        """A new import wrapping key on the token (``hsm/byok.py``); its public half."""
        return self.pool.run_sync(lambda s: byok.make_wrapping_key(s, key_id))

    def destroy_wrapping_key(self, key_id: str) -> bool:
        """Destroy an import wrapping key; whether the token held it."""
        return self.pool.run_sync(lambda s: byok.destroy_wrapping_key(s, key_id))

    def import_wrapped(self, key_id: str, material: bytes, secret_length: int) -> WrappedSecret:
        """Seal under the current KEK the secret ``material`` holds wrapped to the wrapping
        key ``key_id`` (``CKM_RSA_AES_KEY_WRAP`` layout), unwrapping it inside the token."""
        if not MIN_SECRET_BYTES <= secret_length <= MAX_SECRET_BYTES:
            raise SecretLengthInvalid(
                f"secret length {secret_length} outside {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} "
                "bytes"
            )
        label = self.current_kek_label()

        def unwrap(session: pkcs11.Session) -> WrappedSecret:
            kek = self._kek(session, label)
            blob = byok.unwrap_import(session, key_id, material, secret_length, kek)
            return WrappedSecret(blob=blob, secret_length=secret_length, kek_label=label)

        return self.pool.run_sync(unwrap)

    def generate_secret(self, length: int) -> WrappedSecret:
        """A new random secret made inside the token and sealed at once: never in Python."""
        if not MIN_SECRET_BYTES <= length <= MAX_SECRET_BYTES:
            raise SecretLengthInvalid(
                f"secret length {length} outside {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes"
            )
        label = self.current_kek_label()

        def generate(session: pkcs11.Session) -> WrappedSecret:
            kek = self._kek(session, label)
            fresh: Any = session.generate_key(
                KeyType.GENERIC_SECRET,
                length * 8,
                mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
                template=_TRANSIENT_SECRET,
            )
            try:
                blob = kek.wrap_key(fresh, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            finally:
                fresh.destroy()
            return WrappedSecret(blob=blob, secret_length=length, kek_label=label)

        return self.pool.run_sync(generate)

    def release_to_sync(
        self, wrapped: WrappedSecret, tee_key: RsaPublicKey, session: pkcs11.Session
    ) -> SealedSecret:
        """The envelope for ``tee_key``, built inside the token (call on a pool thread)."""
        cache = self._secret_cache()
        if cache is None:
            return self._seal_once(session, wrapped, tee_key)
        key = cache_key(wrapped.kek_label, wrapped.blob)
        secret = cache.get(key)
        if secret is None:
            if not cache.admit(key):  # not released lately: as without a cache
                return self._seal_once(session, wrapped, tee_key)
            secret = self._unwrap(session, wrapped)
            cache.put(key, secret)  # owned by the cache from now on
        return self._seal(session, wrapped, secret, tee_key)

    def _seal_once(
        self, session: pkcs11.Session, wrapped: WrappedSecret, tee_key: RsaPublicKey
    ) -> SealedSecret:
        """Unwrap, seal, and destroy the unwrapped secret: nothing stays in the session."""
        secret = self._unwrap(session, wrapped)
        try:
            return self._seal(session, wrapped, secret, tee_key)
        finally:
            secret.destroy()

    def _unwrap(
        self,
        session: pkcs11.Session,
        wrapped: WrappedSecret,
        template: dict[Attribute, Any] = _TRANSIENT_SECRET,
        key_type: KeyType = KeyType.GENERIC_SECRET,
    ) -> Any:
        """The secret as a session object (SENSITIVE unless ``template`` says otherwise: the
        KBS path's); the caller owns (destroys) it."""
        kek = self._kek(session, wrapped.kek_label)
        try:
            return kek.unwrap_key(
                ObjectClass.SECRET_KEY,
                key_type,
                wrapped.blob,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                template=template,
            )
        except (
            pkcs11.exceptions.GeneralError,
            pkcs11.exceptions.WrappedKeyInvalid,
            pkcs11.exceptions.WrappedKeyLenRange,
            pkcs11.exceptions.EncryptedDataInvalid,
            pkcs11.exceptions.EncryptedDataLenRange,
        ) as exc:
            # SoftHSM reports a failed RFC 5649 integrity check as CKR_GENERAL_ERROR.
            raise BlobInvalid(
                f"wrapped secret does not unwrap under {wrapped.kek_label} ({type(exc).__name__})"
            ) from None

    def _seal(
        self, session: pkcs11.Session, wrapped: WrappedSecret, secret: Any, tee_key: RsaPublicKey
    ) -> SealedSecret:
        """Wrap the unwrapped ``secret`` for ``tee_key``; leaves ``secret`` to its owner."""
        ephemeral: Any = session.generate_key(
            KeyType.AES, 256, template={**_TRANSIENT_SECRET, Attribute.WRAP: True}
        )
        try:
            public: Any = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                    Attribute.KEY_TYPE: KeyType.RSA,
                    Attribute.MODULUS: tee_key.modulus_bytes,
                    Attribute.PUBLIC_EXPONENT: tee_key.exponent_bytes,
                    Attribute.TOKEN: False,
                    Attribute.WRAP: True,
                    Attribute.ENCRYPT: False,
                    Attribute.VERIFY: False,
                }
            )
            try:
                sealed_secret = ephemeral.wrap_key(secret, mechanism=Mechanism.AES_KEY_WRAP_PAD)
                sealed_key = public.wrap_key(
                    ephemeral,
                    mechanism=Mechanism.RSA_PKCS_OAEP,
                    mechanism_param=_OAEP_PARAMS[self.oaep_hash],
                )
            finally:
                public.destroy()
        finally:
            ephemeral.destroy()
        return SealedSecret(
            ciphertext=sealed_key + sealed_secret,
            oaep_hash=self.oaep_hash,
            rsa_bits=tee_key.bits,
            secret_length=wrapped.secret_length,
        )

    def release_jwe_sync(
        self, wrapped: WrappedSecret, to: jwe.Recipient, session: pkcs11.Session
    ) -> jwe.JweEnvelope:
        """The KBS answer for ``to``: the secret passes through broker memory
        (``hsm/jwe.py`` says why, and what would keep it inside). Call on a pool thread."""
        readable = self._unwrap(session, wrapped, jwe.READABLE_SECRET)
        return jwe.seal_unwrapped(readable, wrapped.secret_length, to)

    def open_sealed_sync(self, wrapped: WrappedSecret, session: pkcs11.Session) -> bytearray:
        """A sealed value read back into broker memory: for the KMS access keys' secrets,
        which the broker needs in memory to check a SigV4 signature (HMAC-SHA256 keyed by the
        secret), never for a customer key. The caller overwrites the buffer when done."""
        readable = self._unwrap(session, wrapped, jwe.READABLE_SECRET)
        try:
            value = bytearray(readable[Attribute.VALUE])
        finally:
            readable.destroy()
        del value[wrapped.secret_length :]  # SoftHSM's KWP zero padding (§4 of the docs)
        return value

    def kms_encrypt_sync(
        self,
        wrapped: WrappedSecret,
        header: kmsblob.BlobHeader,
        plaintext: bytes | bytearray,
        context: bytes,
        session: pkcs11.Session,
    ) -> bytes:
        """A KMS ciphertext blob of ``plaintext`` under the key ``wrapped`` holds, made by
        ``C_Encrypt`` inside the token (``hsm/kmsblob.py``)."""
        key = self._kms_key(session, wrapped)
        try:
            return kmsblob.encrypt(key, header, plaintext, context)
        finally:
            key.destroy()

    def kms_decrypt_sync(
        self,
        wrapped: WrappedSecret,
        blob: kmsblob.ParsedBlob,
        context: bytes,
        session: pkcs11.Session,
    ) -> bytearray:
        """The plaintext of ``blob``, by ``C_Decrypt`` inside the token; it is in broker
        memory from here (the caller overwrites it once answered)."""
        key = self._kms_key(session, wrapped)
        try:
            return kmsblob.decrypt(key, blob, context)
        finally:
            key.destroy()

    def kms_data_key_sync(
        self,
        wrapped: WrappedSecret,
        header: kmsblob.BlobHeader,
        length: int,
        context: bytes,
        session: pkcs11.Session,
    ) -> tuple[bytearray, bytes]:
        """A data key of ``length`` bytes drawn from the token's generator, and its blob under
        the key ``wrapped`` holds. Encrypting it takes its bytes as ``C_Encrypt`` input, so it
        is in broker memory from here (the caller overwrites it)."""
        data_key = bytearray(session.generate_random(length * 8))
        key = self._kms_key(session, wrapped)
        try:
            return data_key, kmsblob.encrypt(key, header, data_key, context)
        finally:
            key.destroy()

    def random_sync(self, length: int, session: pkcs11.Session) -> bytearray:
        """``length`` bytes from the token's random generator (``C_GenerateRandom``)."""
        return bytearray(session.generate_random(length * 8))

    def _kms_key(self, session: pkcs11.Session, wrapped: WrappedSecret) -> Any:
        if wrapped.secret_length != kmsblob.KEY_BYTES:
            raise SecretLengthInvalid(
                f"a KMS key is a {kmsblob.KEY_BYTES}-byte secret (AES-256); this key holds "
                f"{wrapped.secret_length} bytes"
            )
        return self._unwrap(session, wrapped, kmsblob.AES_OPERATION, KeyType.AES)

    def release_to(self, wrapped: WrappedSecret, tee_key: RsaPublicKey) -> SealedSecret:
        return self.pool.run_sync(lambda s: self.release_to_sync(wrapped, tee_key, s))

    async def release_to_async(self, wrapped: WrappedSecret, tee_key: RsaPublicKey) -> SealedSecret:
        return await self.pool.run(lambda s: self.release_to_sync(wrapped, tee_key, s))

    # --- signing ---------------------------------------------------------------------------

    @property
    def signing_public_key(self) -> ec.EllipticCurvePublicKey:
        if self._signing_public is None:
            raise HsmUnavailable("custody not ready: call ensure_ready() first")
        return self._signing_public

    def sign_digest_sync(self, digest: bytes, session: pkcs11.Session) -> bytes:
        key = self._signing_key(session)
        signature: bytes = key.sign(digest, mechanism=Mechanism.ECDSA)
        return signature

    def sign_digest(self, digest: bytes) -> bytes:
        return self.pool.run_sync(lambda s: self.sign_digest_sync(digest, s))

    async def sign_digest_async(self, digest: bytes) -> bytes:
        return await self.pool.run(lambda s: self.sign_digest_sync(digest, s))

    # --- health ----------------------------------------------------------------------------

    async def check(self) -> None:
        """Raise ``HsmUnavailable`` unless the token answers and holds a KEK."""

        def probe(session: pkcs11.Session) -> None:
            session.generate_random(64)
            if not kek_versions(session):
                raise HsmUnavailable("token holds no KEK")
            cache = self._secret_cache()
            if cache is not None:  # lets an idle session drop expired secrets
                cache.expire()
            self._session_keys().expire()  # and its old key copies

        await self.pool.run(probe)

    def count_session_objects(self) -> int:
        """Session objects of every session of this application, except the key copies (tests
        assert it returns to 0: unwrapped secrets, ephemeral keys, tee public keys)."""
        return self.pool.run_sync(lambda s: _count_session_objects(s)[1])

    def count_key_copies(self) -> int:
        """Session copies of the signing key and the KEKs, in every session of this
        application (they carry their original's label; nothing else this code makes does)."""
        return self.pool.run_sync(lambda s: _count_session_objects(s)[0])

    def secret_cache_stats(self) -> SecretCacheStats | None:
        """The secret cache of the session that answers (one per pool thread), if enabled."""

        def read(session: pkcs11.Session) -> SecretCacheStats | None:
            cache = self._secret_cache()
            return None if cache is None else cache.stats()

        return self.pool.run_sync(read)

    # --- handle lookup, memoised per thread ------------------------------------------------

    def _secret_cache(self) -> SecretCache | None:
        """This session's secret cache (made on first use), or None when disabled."""
        if not self.secret_cache.enabled:
            return None
        memo = self.pool.thread_cache()
        cache = memo.get(_UNWRAPPED_SLOT)
        if not isinstance(cache, SecretCache):
            cache = memo[_UNWRAPPED_SLOT] = SecretCache(self.secret_cache)
        return cache

    def _session_keys(self) -> SessionKeys:
        """This session's copies of the token keys (made on first use)."""
        memo = self.pool.thread_cache()
        keys = memo.get(_KEYS_SLOT)
        if not isinstance(keys, SessionKeys):
            keys = memo[_KEYS_SLOT] = SessionKeys(self.key_copies)
        return keys

    def _kek(self, session: pkcs11.Session, label: str) -> Any:
        key = None
        if KEK_LABEL.fullmatch(label) is not None:
            key = self._session_keys().get(
                label, lambda: find_one(session, ObjectClass.SECRET_KEY, label)
            )
        if key is None:
            raise KekNotFound(f"no KEK labelled '{label}' on the token")
        return key

    def _signing_key(self, session: pkcs11.Session) -> Any:
        key = self._session_keys().get(
            SIGNING_KEY_LABEL,
            lambda: find_one(session, ObjectClass.PRIVATE_KEY, SIGNING_KEY_LABEL),
        )
        if key is None:
            raise HsmUnavailable("the broker signing key is missing from the token")
        return key


def _count_session_objects(session: pkcs11.Session) -> tuple[int, int]:
    """(key copies, other session objects) visible to this application."""
    copies = others = 0
    for obj in session.get_objects({Attribute.TOKEN: False}):
        label = obj[Attribute.LABEL] or ""
        if label == SIGNING_KEY_LABEL or KEK_LABEL.fullmatch(label):
            copies += 1
        else:
            others += 1
    return copies, others


def _read_signing_public_key(session: pkcs11.Session) -> ec.EllipticCurvePublicKey:
    public = find_one(session, ObjectClass.PUBLIC_KEY, SIGNING_KEY_LABEL)
    if public is None:
        raise HsmUnavailable("the broker signing public key is missing from the token")
    return p256_public_key(public)


def _probe_oaep_hash(session: pkcs11.Session) -> OaepHash:
    """SHA-256 OAEP where the token supports it, else SHA-1 (SoftHSM 2.6.1: CKR_ARGUMENTS_BAD)."""
    probe_key = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    public: Any = session.create_object(
        {
            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.KEY_TYPE: KeyType.RSA,
            Attribute.MODULUS: probe_key.n.to_bytes(256, "big"),
            Attribute.PUBLIC_EXPONENT: probe_key.e.to_bytes(3, "big"),
            Attribute.TOKEN: False,
            Attribute.WRAP: True,
        }
    )
    try:
        ephemeral = session.generate_key(KeyType.AES, 256, template=_TRANSIENT_SECRET)
        try:
            for candidate in (OaepHash.SHA256, OaepHash.SHA1):
                try:
                    public.wrap_key(
                        ephemeral,
                        mechanism=Mechanism.RSA_PKCS_OAEP,
                        mechanism_param=_OAEP_PARAMS[candidate],
                    )
                except (
                    pkcs11.exceptions.ArgumentsBad,
                    pkcs11.exceptions.MechanismParamInvalid,
                    pkcs11.exceptions.MechanismInvalid,
                ):
                    continue
                return candidate
        finally:
            ephemeral.destroy()
    finally:
        public.destroy()
    raise HsmUnavailable("token wraps with neither SHA-256 nor SHA-1 RSA-OAEP")
