"""HSM custody against a real SoftHSM token: envelopes, errors, threads, KEK rotation, the
cache of unwrapped secrets, the session copies of the token keys.

``count_session_objects`` counts every session's objects except the key copies (session
copies of the signing key and KEKs, which each session keeps on purpose): tests assert that
unwrapped secrets, ephemeral keys and tee public keys do not outlive their use.
``count_key_copies`` counts the copies, which the tests of their own bound and check."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256, Hash
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from benchmarks import cold_cache, envelope_cache
from broker import jose
from broker.bench import floor
from broker.localstate.softhsm import LocalSoftHsm
from hsm.custody import Custody, WrappedSecret
from hsm.envelope import EnvelopeError, OaepHash, open_envelope
from hsm.errors import BlobInvalid, HsmUnavailable, KekNotFound, SecretLengthInvalid
from hsm.keycopies import KEY_COPY_MAX_AGE_SECONDS, KeyCopyLimits, SessionKeys
from hsm.provision import SIGNING_KEY_LABEL
from hsm.pubkey import RsaPublicKey, from_spki_der
from hsm.secretcache import SecretCacheLimits, SecretCacheStats

pytestmark = pytest.mark.integration


def _public(private: rsa.RSAPrivateKey) -> RsaPublicKey:
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return from_spki_der(der)


def _assert_signs_for_the_token_key(custody: Custody, message: bytes) -> None:
    """An ES256 signature by ``custody`` verifies under the token key pair's public key."""
    hashed = Hash(SHA256())
    hashed.update(message)
    digest = hashed.finalize()
    raw = custody.sign_digest(digest)
    assert len(raw) == 64  # r || s, the JWS ES256 format
    signature = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    custody.signing_public_key.verify(signature, digest, ec.ECDSA(Prehashed(SHA256())))


@pytest.fixture(scope="module")
def tee_keys() -> dict[int, rsa.RSAPrivateKey]:
    return {bits: rsa.generate_private_key(65537, bits) for bits in (3072, 4096)}


@pytest.mark.parametrize("bits", [3072, 4096])
@pytest.mark.parametrize("length", [1, 32, 33, 64, 4096])
def test_envelope_round_trip(
    custody: Custody, tee_keys: dict[int, rsa.RSAPrivateKey], bits: int, length: int
) -> None:
    secret = os.urandom(length)
    wrapped = custody.import_secret(secret)
    assert wrapped.secret_length == length
    if length >= 16:  # a short secret can occur in random-looking bytes by chance
        assert secret not in wrapped.blob

    sealed = custody.release_to(wrapped, _public(tee_keys[bits]))

    assert sealed.rsa_bits == bits
    assert sealed.secret_length == length
    assert sealed.oaep_hash is custody.oaep_hash
    assert sealed.algorithm == (
        "CKM_RSA_AES_KEY_WRAP" if custody.oaep_hash is OaepHash.SHA1 else "RSA_AES_KEY_WRAP_256"
    )
    opened = open_envelope(tee_keys[bits], sealed.ciphertext, sealed.oaep_hash, length)
    assert opened == secret


def test_soft_hsm_probe_finds_sha1_oaep(custody: Custody) -> None:
    # SoftHSM 2.6.1 refuses SHA-256 OAEP with CKR_ARGUMENTS_BAD (ARCHITECTURE §4): the probe
    # must have fallen back, and the envelope header states it.
    assert custody.oaep_hash is OaepHash.SHA1


def test_envelope_does_not_open_with_another_key(
    custody: Custody, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    sealed = custody.release_to(custody.import_secret(b"k" * 32), _public(tee_keys[3072]))
    stranger = rsa.generate_private_key(65537, 3072)
    with pytest.raises(EnvelopeError, match="RSA-OAEP"):
        open_envelope(stranger, sealed.ciphertext, sealed.oaep_hash, 32)


def test_tampered_blob_is_refused(custody: Custody, tee_keys: dict[int, rsa.RSAPrivateKey]) -> None:
    wrapped = custody.import_secret(os.urandom(32))
    for index in (0, len(wrapped.blob) // 2, len(wrapped.blob) - 1):
        tampered = bytearray(wrapped.blob)
        tampered[index] ^= 0x01
        bad = WrappedSecret(bytes(tampered), wrapped.secret_length, wrapped.kek_label)
        with pytest.raises(BlobInvalid, match="does not unwrap under keybroker-kek-v"):
            custody.release_to(bad, _public(tee_keys[3072]))
    assert custody.count_session_objects() == 0


def test_truncated_blob_is_refused(
    custody: Custody, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    wrapped = custody.import_secret(os.urandom(32))
    bad = WrappedSecret(wrapped.blob[:-8], wrapped.secret_length, wrapped.kek_label)
    with pytest.raises(BlobInvalid):
        custody.release_to(bad, _public(tee_keys[3072]))


def test_unknown_kek_label_is_refused(
    custody: Custody, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    wrapped = custody.import_secret(os.urandom(32))
    bad = WrappedSecret(wrapped.blob, wrapped.secret_length, "keybroker-kek-v999")
    with pytest.raises(KekNotFound, match="keybroker-kek-v999"):
        custody.release_to(bad, _public(tee_keys[3072]))


@pytest.mark.parametrize("length", [0, 8193])
def test_secret_length_bounds(custody: Custody, length: int) -> None:
    with pytest.raises(SecretLengthInvalid, match=f"secret length {length} outside 1..8192"):
        custody.import_secret(b"\x00" * length)


def test_kek_rotation_keeps_old_blobs_releasable(
    custody: Custody, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    old_secret = os.urandom(48)
    old = custody.import_secret(old_secret)
    new_label = custody.rotate_kek()

    assert new_label != old.kek_label
    assert custody.current_kek_label() == new_label
    new = custody.import_secret(os.urandom(48))
    assert new.kek_label == new_label

    sealed = custody.release_to(old, _public(tee_keys[3072]))
    assert open_envelope(tee_keys[3072], sealed.ciphertext, sealed.oaep_hash, 48) == old_secret

    # A blob is bound to its KEK version: presenting it under the other version fails.
    wrong_version = WrappedSecret(old.blob, old.secret_length, new_label)
    with pytest.raises(BlobInvalid, match=new_label):
        custody.release_to(wrong_version, _public(tee_keys[3072]))


def test_concurrent_releases_leave_no_session_objects(
    custody: Custody, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    secret = os.urandom(33)
    wrapped = custody.import_secret(secret)
    public = _public(tee_keys[3072])
    errors: list[BaseException] = []
    envelopes: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(500):
                sealed = custody.release_to(wrapped, public)
                with lock:
                    envelopes.append(sealed.ciphertext)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(envelopes) == 2000
    assert len(set(envelopes)) == 2000  # a fresh ephemeral key and OAEP seed every time
    for ciphertext in envelopes[::250]:
        assert open_envelope(tee_keys[3072], ciphertext, custody.oaep_hash, 33) == secret
    assert custody.count_session_objects() == 0
    # Key copies are per session and per key, never per call: at most one per pool thread
    # and token key (the signing key and every KEK version earlier tests made).
    assert custody.count_key_copies() <= custody.pool.threads * (len(custody.kek_versions()) + 1)


def test_signing_key_signs_verifiable_es256(custody: Custody) -> None:
    _assert_signs_for_the_token_key(custody, b"header.payload")
    # By default, sessions sign with their copy of the token key (hsm/keycopies.py).
    assert custody.pool.run_sync(lambda s: custody._signing_key(s)[Attribute.TOKEN]) is False


def test_tokens_signed_by_the_token_key_verify_though_ckm_ecdsa_gives_high_s(
    custody: Custody,
) -> None:
    """CKM_ECDSA returns s or n - s as it comes, and the broker accepts only low S
    (broker/jose.py): every token it signs must still verify. 64 signatures hold a high S
    with probability 1 - 2^-64."""
    kid = jose.key_id(custody.signing_public_key)
    raw_high = 0

    def counting(digest: bytes) -> bytes:
        nonlocal raw_high
        raw = custody.sign_digest(digest)
        raw_high += int.from_bytes(raw[32:], "big") > jose.P256_ORDER // 2
        return raw

    for index in range(64):
        token = jose.sign_sync({"i": index}, jose.TYP_ATTESTATION_RESULT, kid, counting)
        assert jose.verify(token, jose.TYP_ATTESTATION_RESULT, custody.signing_public_key) == {
            "i": index
        }
    assert raw_high > 0


async def test_inline_pool_runs_on_the_callers_thread(
    softhsm: LocalSoftHsm, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    # hsm_threads = 0: no executor; the token is called from the event loop's own thread.
    inline = Custody.open(softhsm.module_path, softhsm.token_label, softhsm.user_pin, threads=0)
    try:
        inline.ensure_ready()
        caller = threading.get_ident()
        assert await inline.pool.run(lambda _: threading.get_ident()) == caller
        secret = os.urandom(32)
        sealed = await inline.release_to_async(
            inline.import_secret(secret), _public(tee_keys[3072])
        )
        assert open_envelope(tee_keys[3072], sealed.ciphertext, inline.oaep_hash, 32) == secret
        assert len(await inline.sign_digest_async(bytes(32))) == 64
    finally:
        inline.close()


def test_only_kek_labelled_keys_unwrap(
    custody: Custody, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    """A secret key on the token that is not a KEK (by label) is never used as one."""
    impostor = custody.pool.run_sync(
        lambda session: session.generate_key(
            KeyType.AES,
            256,
            label="not-a-kek",
            store=False,
            template={Attribute.WRAP: True, Attribute.UNWRAP: True},
        )
    )
    try:
        wrapped = custody.import_secret(os.urandom(32))
        bad = WrappedSecret(wrapped.blob, wrapped.secret_length, "not-a-kek")
        with pytest.raises(KekNotFound, match="no KEK labelled 'not-a-kek'"):
            custody.release_to(bad, _public(tee_keys[3072]))
    finally:
        custody.pool.run_sync(lambda _session: impostor.destroy())
    assert custody.count_session_objects() == 0


# --- the cache of unwrapped secrets -----------------------------------------------------------
# Each test opens its own custody with one pool thread (or none), hence one session and one
# cache, so hits and misses are deterministic; count_session_objects sees the objects of every
# session of this process, and is 0 between tests (the shared custody keeps none).


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


OpenCached = Callable[..., Custody]


@pytest.fixture
def open_cached(softhsm: LocalSoftHsm, custody: Custody) -> Iterator[OpenCached]:
    opened: list[Custody] = []

    copies_before = custody.count_key_copies()

    def open_custody(
        size: int,
        max_age: float = 300.0,
        clock: Callable[[], float] | None = None,
        threads: int = 1,
        copies: bool = True,
    ) -> Custody:
        clock = clock or FakeClock()
        limits = SecretCacheLimits(size, max_age, clock)
        one = Custody.open(
            softhsm.module_path,
            softhsm.token_label,
            softhsm.user_pin,
            threads,
            limits,
            key_copies=KeyCopyLimits(copies, KEY_COPY_MAX_AGE_SECONDS, clock),
        )
        opened.append(one)
        one.ensure_ready()
        return one

    yield open_custody
    for one in opened:
        one.close()
    assert custody.count_session_objects() == 0  # closing a custody drops its cache
    assert custody.count_key_copies() == copies_before  # and its key copies


def _release_and_open(
    custody: Custody, wrapped: WrappedSecret, private: rsa.RSAPrivateKey
) -> tuple[bytes, bytes]:
    """The envelope's ciphertext and the secret the guest recovers from it."""
    sealed = custody.release_to(wrapped, _public(private))
    opened = open_envelope(private, sealed.ciphertext, sealed.oaep_hash, wrapped.secret_length)
    return sealed.ciphertext, opened


def _admit(custody: Custody, wrapped: WrappedSecret, private: rsa.RSAPrivateKey) -> None:
    """Release ``wrapped`` twice: a secret is kept from its second release in a while."""
    for _ in range(2):
        _release_and_open(custody, wrapped, private)


def test_cache_hit_releases_the_same_secret(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    cached = open_cached(4)
    secret = os.urandom(33)
    wrapped = cached.import_secret(secret)

    first, first_secret = _release_and_open(cached, wrapped, tee_keys[3072])
    # Released once: used and destroyed, as without a cache; only the miss is remembered.
    assert cached.secret_cache_stats() == SecretCacheStats(entries=0, hits=0, misses=1)
    assert cached.count_session_objects() == 0
    second, second_secret = _release_and_open(cached, wrapped, tee_keys[3072])
    assert cached.secret_cache_stats() == SecretCacheStats(entries=1, hits=0, misses=2)
    third, third_secret = _release_and_open(cached, wrapped, tee_keys[3072])
    fourth, fourth_secret = _release_and_open(cached, wrapped, tee_keys[4096])

    assert cached.secret_cache_stats() == SecretCacheStats(entries=1, hits=2, misses=2)
    assert first_secret == second_secret == third_secret == fourth_secret == secret
    assert len({first, second, third, fourth}) == 4  # still a fresh ephemeral key every time
    assert cached.count_session_objects() == 1  # the one unwrapped secret, nothing else


def test_keys_released_once_each_are_not_kept(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    cached = open_cached(2)
    hot = cached.import_secret(os.urandom(32))
    _admit(cached, hot, tee_keys[3072])
    # Many keys released once each (more than the cache holds) never push out the hot one.
    for _ in range(5):
        secret = os.urandom(32)
        assert _release_and_open(cached, cached.import_secret(secret), tee_keys[3072])[1] == secret
    assert cached.count_session_objects() == 1
    _release_and_open(cached, hot, tee_keys[3072])
    assert cached.secret_cache_stats() == SecretCacheStats(entries=1, hits=1, misses=7)


def test_cache_is_keyed_by_blob_and_kek_label(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    cached = open_cached(4)
    secret_a, secret_b = os.urandom(32), os.urandom(32)
    a, b = cached.import_secret(secret_a), cached.import_secret(secret_b)
    assert a.kek_label == b.kek_label

    for _ in range(2):
        assert _release_and_open(cached, a, tee_keys[3072])[1] == secret_a
        assert _release_and_open(cached, b, tee_keys[3072])[1] == secret_b
    assert cached.secret_cache_stats() == SecretCacheStats(entries=2, hits=0, misses=4)

    # The same blob under another KEK label is another entry: it must really unwrap there.
    other_label = cached.rotate_kek()
    with pytest.raises(BlobInvalid, match=other_label):
        cached.release_to(
            WrappedSecret(a.blob, a.secret_length, other_label), _public(tee_keys[3072])
        )
    assert cached.secret_cache_stats() == SecretCacheStats(entries=2, hits=0, misses=5)
    assert cached.count_session_objects() == 2


def test_cache_bound_evicts_the_least_recently_used_and_destroys_it(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    cached = open_cached(2)
    secrets = [os.urandom(40) for _ in range(3)]
    a, b, c = (cached.import_secret(secret) for secret in secrets)
    private = tee_keys[3072]

    for wrapped in (a, b, a, b, a):  # both kept; a is now the most recently used
        _release_and_open(cached, wrapped, private)
    assert cached.secret_cache_stats() == SecretCacheStats(entries=2, hits=1, misses=4)
    _release_and_open(cached, c, private)  # c's first release: not kept, nothing evicted
    assert cached.count_session_objects() == 2
    assert _release_and_open(cached, c, private)[1] == secrets[2]  # kept: evicts b, not a
    assert cached.count_session_objects() == 2  # b's object was destroyed

    assert _release_and_open(cached, a, private)[1] == secrets[0]
    assert cached.secret_cache_stats() == SecretCacheStats(entries=2, hits=2, misses=6)
    assert _release_and_open(cached, b, private)[1] == secrets[1]  # missed again, not yet kept
    assert cached.secret_cache_stats() == SecretCacheStats(entries=2, hits=2, misses=7)
    assert cached.count_session_objects() == 2


async def test_cache_entries_expire_and_are_unwrapped_again(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    clock = FakeClock()
    cached = open_cached(4, 300.0, clock)
    secret = os.urandom(32)
    a, b = cached.import_secret(secret), cached.import_secret(os.urandom(32))
    private = tee_keys[3072]

    _admit(cached, a, private)
    clock.now += 299.0
    _release_and_open(cached, a, private)  # a use does not make an entry younger
    assert cached.secret_cache_stats() == SecretCacheStats(entries=1, hits=1, misses=2)
    clock.now += 1.0
    assert _release_and_open(cached, a, private)[1] == secret
    assert cached.secret_cache_stats() == SecretCacheStats(entries=0, hits=1, misses=3)
    assert cached.count_session_objects() == 0  # the expired object was destroyed
    _release_and_open(cached, a, private)  # released again soon: kept again
    assert cached.count_session_objects() == 1

    # Any use of the cache destroys every expired entry, not only the one asked for.
    clock.now += 300.0
    _admit(cached, b, private)
    assert cached.secret_cache_stats() == SecretCacheStats(entries=1, hits=1, misses=6)
    assert cached.count_session_objects() == 1
    # So does the readiness probe, on an otherwise idle session.
    clock.now += 300.0
    await cached.check()
    assert cached.secret_cache_stats() == SecretCacheStats(entries=0, hits=1, misses=6)
    assert cached.count_session_objects() == 0


def test_cache_size_zero_keeps_no_session_object(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    uncached = open_cached(0)
    secret = os.urandom(32)
    wrapped = uncached.import_secret(secret)
    for _ in range(2):
        assert _release_and_open(uncached, wrapped, tee_keys[3072])[1] == secret
        assert uncached.count_session_objects() == 0
    assert uncached.secret_cache_stats() is None


def test_cache_keeps_nothing_from_a_bad_blob(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    cached = open_cached(4)
    wrapped = cached.import_secret(os.urandom(32))
    tampered = bytearray(wrapped.blob)
    tampered[len(tampered) // 2] ^= 0x01
    bad = WrappedSecret(bytes(tampered), wrapped.secret_length, wrapped.kek_label)
    public = _public(tee_keys[3072])

    with pytest.raises(BlobInvalid, match="does not unwrap under keybroker-kek-v"):
        cached.release_to(bad, public)
    with pytest.raises(BlobInvalid, match="does not unwrap under keybroker-kek-v"):
        cached.release_to(bad, public)  # a second miss, which would admit a good blob
    assert cached.count_session_objects() == 0
    _admit(cached, wrapped, tee_keys[3072])
    with pytest.raises(BlobInvalid, match="does not unwrap under keybroker-kek-v"):
        cached.release_to(bad, public)
    assert cached.secret_cache_stats() == SecretCacheStats(entries=1, hits=0, misses=5)
    assert cached.count_session_objects() == 1


def test_cache_is_dropped_with_its_session(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    cached = open_cached(4)
    secret = os.urandom(32)
    wrapped = cached.import_secret(secret)
    _admit(cached, wrapped, tee_keys[3072])
    assert cached.count_session_objects() == 1

    def token_trouble(_session: pkcs11.Session) -> None:
        raise pkcs11.exceptions.DeviceError()

    # The pool's recovery path: the session is closed, its objects die, its memo is forgotten.
    with pytest.raises(HsmUnavailable, match="DeviceError"):
        cached.pool.run_sync(token_trouble)
    assert cached.count_session_objects() == 0

    # A cache that outlived its session would hand out a dead handle here (503).
    assert _release_and_open(cached, wrapped, tee_keys[3072])[1] == secret
    assert cached.secret_cache_stats() == SecretCacheStats(entries=0, hits=0, misses=1)


def test_any_pkcs11_failure_discards_the_session_and_its_objects(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    cached = open_cached(4)
    secret = os.urandom(32)
    wrapped = cached.import_secret(secret)
    _admit(cached, wrapped, tee_keys[3072])
    assert cached.count_session_objects() == 1

    def failed_half_way(_session: pkcs11.Session) -> None:
        raise pkcs11.exceptions.OperationActive()  # not a "token unavailable" error

    with pytest.raises(HsmUnavailable, match="PKCS#11 call failed: OperationActive"):
        cached.pool.run_sync(failed_half_way)
    assert cached.count_session_objects() == 0  # nothing untracked survives
    assert _release_and_open(cached, wrapped, tee_keys[3072])[1] == secret


def test_floor_refuses_a_cached_custody(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    cached = open_cached(1)
    wrapped = cached.import_secret(os.urandom(32))
    public = _public(tee_keys[3072])
    case = floor.FloorCase("snp", b"", {}, (), datetime.now(UTC), wrapped, public)
    with pytest.raises(ValueError, match="without a secret cache"):
        floor.measure(case, cached, 0.1)
    with pytest.raises(ValueError, match="without a secret cache"):
        floor.envelope_rate(cached, wrapped, [public], 1, 0.1)
    assert cached.count_session_objects() == 0  # refused before any release


def test_envelope_cache_bench_measures_both_paths(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    # Numbers are reported by the module, never asserted here: only that both paths ran. It
    # drives the caller's own session, as the floor does: no pool threads.
    uncached, cached = open_cached(0, threads=0), open_cached(2, threads=0)
    keys = [uncached.import_secret(os.urandom(32)) for _ in range(2)]
    public = _public(tee_keys[3072])
    for custody in (uncached, cached):
        assert envelope_cache.microseconds_per_envelope(custody, keys, public, 4) > 0
    assert cached.secret_cache_stats() == SecretCacheStats(entries=2, hits=2, misses=4)
    assert uncached.secret_cache_stats() is None


# --- session copies of the token keys --------------------------------------------------------
# Each test opens its own custody with one pool thread: one session, whose copies the test
# counts against the copies every other session of this process already holds (the shared
# custody's, which no test below uses, so they neither grow nor age meanwhile).

_PROTECTION = (Attribute.TOKEN, Attribute.PRIVATE, Attribute.SENSITIVE, Attribute.EXTRACTABLE)
_TOKEN_KEY = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}
_KEY_COPY = {**_TOKEN_KEY, Attribute.TOKEN: False}


def _outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except pkcs11.PKCS11Error as exc:
        return type(exc).__name__
    return "done"


def _inspect(custody: Custody, object_class: ObjectClass, label: str) -> list[dict[object, object]]:
    """For every object of this class and label, token or session: its protection attributes,
    what reading its value gives, and what wrapping it under a fresh AES key gives."""

    def inspect(session: pkcs11.Session) -> list[dict[object, object]]:
        wrapper: pkcs11.SecretKey = session.generate_key(
            KeyType.AES, 256, template={Attribute.TOKEN: False, Attribute.WRAP: True}
        )
        try:
            found = []
            for obj in session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}):
                seen: dict[object, object] = {
                    attribute: obj[attribute] for attribute in _PROTECTION
                }
                seen["value"] = _outcome(lambda obj=obj: obj[Attribute.VALUE])
                seen["wrap"] = _outcome(
                    lambda obj=obj: wrapper.wrap_key(obj, mechanism=Mechanism.AES_KEY_WRAP_PAD)
                )
                found.append(seen)
            return found
        finally:
            wrapper.destroy()

    return custody.pool.run_sync(inspect)


def _assert_copies_as_protected_as_the_token_key(
    custody: Custody, object_class: ObjectClass, label: str
) -> None:
    found = _inspect(custody, object_class, label)
    sealed = {"value": "AttributeSensitive", "wrap": "KeyUnextractable"}
    token = [seen for seen in found if seen[Attribute.TOKEN]]
    copies = [seen for seen in found if not seen[Attribute.TOKEN]]
    assert token == [{**_TOKEN_KEY, **sealed}]
    assert copies
    assert all(seen == {**_KEY_COPY, **sealed} for seen in copies)


def test_signing_key_copy_signs_for_the_token_key(open_cached: OpenCached) -> None:
    one = open_cached(0)
    before = one.count_key_copies()
    for index in range(3):
        _assert_signs_for_the_token_key(one, f"header.payload{index}".encode())
    assert one.count_key_copies() == before + 1  # made on first use, then kept
    # The session signs with the copy, not with the token object.
    assert one.pool.run_sync(lambda s: one._signing_key(s)[Attribute.TOKEN]) is False
    _assert_copies_as_protected_as_the_token_key(one, ObjectClass.PRIVATE_KEY, SIGNING_KEY_LABEL)


def test_kek_copy_seals_and_unwraps_as_the_token_kek(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    one = open_cached(0)
    before = one.count_key_copies()
    secret = os.urandom(33)
    wrapped = one.import_secret(secret)
    assert one.count_key_copies() == before + 1
    for bits in (3072, 4096):
        assert _release_and_open(one, wrapped, tee_keys[bits])[1] == secret
    assert one.count_key_copies() == before + 1  # the same copy unwrapped both
    _assert_copies_as_protected_as_the_token_key(one, ObjectClass.SECRET_KEY, wrapped.kek_label)
    # A blob sealed through the copy is an ordinary blob of the token KEK.
    assert _release_and_open(open_cached(0, copies=False), wrapped, tee_keys[3072])[1] == secret


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({Attribute.SENSITIVE: False}, "AttributeReadOnly"),
        ({Attribute.EXTRACTABLE: True}, "AttributeReadOnly"),
        ({Attribute.PRIVATE: False}, "TemplateInconsistent"),
    ],
)
@pytest.mark.parametrize(
    ("object_class", "label"),
    [(ObjectClass.PRIVATE_KEY, SIGNING_KEY_LABEL), (ObjectClass.SECRET_KEY, "keybroker-kek-v1")],
)
def test_a_copy_cannot_weaken_the_token_key(
    custody: Custody,
    change: dict[Attribute, bool],
    refused: str,
    object_class: ObjectClass,
    label: str,
) -> None:
    """PKCS#11 v2.40 §4.9/§4.10: CKA_SENSITIVE never goes true->false, CKA_EXTRACTABLE never
    false->true, neither in C_CopyObject's template nor later on the copy; SoftHSM also
    refuses a copy that is not CKA_PRIVATE (the specification would allow it: check_copy
    guards that on other tokens)."""

    def attempt(session: pkcs11.Session) -> tuple[str, str]:
        template = {Attribute.CLASS: object_class, Attribute.LABEL: label, Attribute.TOKEN: True}
        original = next(iter(session.get_objects(template)))
        try:
            weakened = original.copy({Attribute.TOKEN: False, **change})
        except pkcs11.PKCS11Error as exc:
            copied = type(exc).__name__
        else:
            weakened.destroy()
            copied = "copied"
        copy = original.copy({Attribute.TOKEN: False})
        try:
            ((attribute, value),) = change.items()
            modified = _outcome(lambda: copy.__setitem__(attribute, value))
        finally:
            copy.destroy()
        return copied, modified

    assert custody.pool.run_sync(attempt) == (refused, "AttributeReadOnly")


class FakeKey:
    """A stand-in for a python-pkcs11 key: attributes by subscript, copy, destroy."""

    def __init__(self, attributes: dict[Attribute, bool], copy_changes: dict[Attribute, bool]):
        self.attributes = attributes
        self.copy_changes = copy_changes
        self.copies: list[FakeKey] = []
        self.destroyed = False

    def __getitem__(self, attribute: Attribute) -> bool:
        return self.attributes[attribute]

    def copy(self, template: dict[Attribute, bool]) -> FakeKey:
        made = FakeKey({**self.attributes, **template, **self.copy_changes}, {})
        self.copies.append(made)
        return made

    def destroy(self) -> None:
        self.destroyed = True


@pytest.mark.parametrize(
    ("weakened", "message"),
    [
        ({Attribute.SENSITIVE: False}, "CKA_SENSITIVE False != token object's True"),
        ({Attribute.EXTRACTABLE: True}, "CKA_EXTRACTABLE True != token object's False"),
        ({Attribute.PRIVATE: False}, "CKA_PRIVATE False != token object's True"),
        ({Attribute.TOKEN: True}, "CKA_TOKEN True != False"),
    ],
)
def test_a_weakened_copy_is_destroyed_and_refused(
    weakened: dict[Attribute, bool], message: str
) -> None:
    # No token does this that we know of (SoftHSM refuses, above): a fake token does.
    original = FakeKey(dict(_TOKEN_KEY), weakened)
    keys = SessionKeys(KeyCopyLimits())
    with pytest.raises(HsmUnavailable, match=f"copy of 'keybroker-kek-v7': {message}"):
        keys.get("keybroker-kek-v7", lambda: original)
    assert [copy.destroyed for copy in original.copies] == [True]
    assert keys.copies() == 0
    assert original.destroyed is False

    faithful = FakeKey(dict(_TOKEN_KEY), {})
    assert keys.get("keybroker-kek-v7", lambda: faithful) is faithful.copies[0]
    assert keys.copies() == 1


def _add_uncopyable_kek(custody: Custody) -> str:
    """A KEK of the next version that the token refuses to copy (CKA_COPYABLE false)."""
    label = f"keybroker-kek-v{max(custody.kek_versions()) + 1}"
    usable = (Attribute.PRIVATE, Attribute.SENSITIVE, Attribute.WRAP, Attribute.UNWRAP)
    template = dict.fromkeys(usable, True) | {
        Attribute.EXTRACTABLE: False,
        Attribute.COPYABLE: False,
    }
    custody.pool.run_sync(
        lambda session: session.generate_key(
            KeyType.AES, 256, label=label, store=True, template=template
        )
    )
    return label


def _destroy_token_kek(custody: Custody, label: str) -> None:
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.LABEL: label,
        Attribute.TOKEN: True,
    }
    custody.pool.run_sync(lambda session: [key.destroy() for key in session.get_objects(template)])


def test_a_key_the_token_will_not_copy_is_used_where_it_is(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    # CKA_COPYABLE false (PKCS#11 v2.40 §4.4): C_CopyObject answers CKR_ACTION_PROHIBITED.
    one = open_cached(0)
    label = _add_uncopyable_kek(one)
    try:
        before = one.count_key_copies()
        secret = os.urandom(32)
        wrapped = one.import_secret(secret)
        assert wrapped.kek_label == label
        assert _release_and_open(one, wrapped, tee_keys[3072])[1] == secret
        assert one.count_key_copies() == before
    finally:
        _destroy_token_kek(one, label)


def test_a_kek_destroyed_on_the_token_stops_working_when_its_copy_ages(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    clock = FakeClock()
    one = open_cached(0, clock=clock)
    other = open_cached(0)  # another session, whose clock stands still: its copy stays
    label = one.rotate_kek()
    secret = os.urandom(32)
    wrapped = one.import_secret(secret)
    assert wrapped.kek_label == label
    assert _release_and_open(other, wrapped, tee_keys[3072])[1] == secret
    copies = one.count_key_copies()
    _destroy_token_kek(one, label)

    # The documented bound, not a wish: the copy serves until it is max-age old.
    clock.now += KEY_COPY_MAX_AGE_SECONDS - 1
    assert _release_and_open(one, wrapped, tee_keys[3072])[1] == secret
    clock.now += 1
    # Then the token object is looked up again; the other session's copy, a session object
    # with the same label, cannot stand in for it.
    with pytest.raises(KekNotFound, match=f"no KEK labelled '{label}'"):
        one.release_to(wrapped, _public(tee_keys[3072]))
    assert one.count_key_copies() == copies - 1  # the old copy was destroyed


def test_key_copies_die_with_their_session_and_are_made_again(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    one = open_cached(0)
    before = one.count_key_copies()
    secret = os.urandom(32)
    wrapped = one.import_secret(secret)
    _assert_signs_for_the_token_key(one, b"before")
    assert one.count_key_copies() == before + 2

    def token_trouble(_session: pkcs11.Session) -> None:
        raise pkcs11.exceptions.DeviceError()

    with pytest.raises(HsmUnavailable, match="DeviceError"):
        one.pool.run_sync(token_trouble)
    assert one.count_key_copies() == before  # closed with the session

    # Copies that outlived their session would be dead handles here (503).
    _assert_signs_for_the_token_key(one, b"after")
    assert _release_and_open(one, wrapped, tee_keys[3072])[1] == secret
    assert one.count_key_copies() == before + 2


def test_each_kek_version_has_its_own_copy(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    one = open_cached(0)
    old_secret, new_secret = os.urandom(48), os.urandom(48)
    old = one.import_secret(old_secret)
    before = one.count_key_copies()
    new_label = one.rotate_kek()
    new = one.import_secret(new_secret)
    assert new.kek_label == new_label != old.kek_label
    assert one.count_key_copies() == before + 1

    for _ in range(2):
        assert _release_and_open(one, old, tee_keys[3072])[1] == old_secret
        assert _release_and_open(one, new, tee_keys[4096])[1] == new_secret
    assert one.count_key_copies() == before + 1
    with pytest.raises(BlobInvalid, match=new_label):
        one.release_to(
            WrappedSecret(old.blob, old.secret_length, new_label), _public(tee_keys[3072])
        )


async def test_old_key_copies_are_destroyed_and_made_afresh(open_cached: OpenCached) -> None:
    clock = FakeClock()
    one = open_cached(0, clock=clock)
    before = one.count_key_copies()
    one.import_secret(os.urandom(32))
    _assert_signs_for_the_token_key(one, b"first")
    assert one.count_key_copies() == before + 2

    clock.now += KEY_COPY_MAX_AGE_SECONDS - 1
    await one.check()
    assert one.count_key_copies() == before + 2
    clock.now += 1
    await one.check()  # the readiness probe lets an idle session drop its old copies
    assert one.count_key_copies() == before
    _assert_signs_for_the_token_key(one, b"again")
    assert one.count_key_copies() == before + 1


def test_key_copies_can_be_turned_off(
    open_cached: OpenCached, tee_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    one = open_cached(0, copies=False)
    before = one.count_key_copies()
    secret = os.urandom(32)
    wrapped = one.import_secret(secret)
    _assert_signs_for_the_token_key(one, b"no copy")
    assert _release_and_open(one, wrapped, tee_keys[3072])[1] == secret
    assert one.count_key_copies() == before
    assert one.pool.run_sync(lambda s: one._signing_key(s)[Attribute.TOKEN]) is True


def test_cold_cache_bench_measures_both_ways(open_cached: OpenCached) -> None:
    # Only that each way ran through the real operation (numbers are the module's to print).
    custody = open_cached(0, threads=0)
    wrapped = custody.import_secret(os.urandom(32))
    public = envelope_cache.random_tee_key()
    calls: list[int] = []

    def envelope() -> None:
        calls.append(1)
        custody.release_to_sync(wrapped, public, custody.pool.session())

    hot, _ = cold_cache.hot_and_cold(envelope, calls=2, rounds=2)
    assert hot > 0  # the cold figure is a difference of two timings: at 2 calls, any sign
    assert len(calls) == 2 * (1 + 2) * 2  # per round: a warm-up call and two, each way
    assert custody.count_session_objects() == 0
