"""The nonce MAC key on a real SoftHSM token (``hsm/noncekey.py``): how the token object is
protected, that every process on one token derives the same key and another token another
one, and that the broker refuses a token holding two objects under one of its labels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from broker.cli.serve import prepare_token
from broker.errors import NonceUnknown
from broker.localstate.softhsm import LocalSoftHsm
from broker.release.nonces import Nonces, decode
from broker.settings import Settings
from hsm.custody import Custody
from hsm.errors import ConfigurationError, HsmUnavailable
from hsm.noncekey import NONCE_KEY_LABEL, derive_nonce_mac_key, nonce_key_objects
from hsm.provision import SIGNING_KEY_LABEL

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def fresh_custody(softhsm: LocalSoftHsm) -> Iterator[Callable[[], Custody]]:
    """Opens custodies on the session's token, as other worker processes would (each its
    own pool and sessions), and closes them after the test."""
    opened: list[Custody] = []

    def open_one() -> Custody:
        custody = Custody.open(
            softhsm.module_path, softhsm.token_label, softhsm.user_pin, threads=0
        )
        opened.append(custody)
        return custody

    yield open_one
    for custody in opened:
        custody.close()


def test_the_nonce_key_is_a_sealed_hmac_key(custody: Custody) -> None:
    def read(session: pkcs11.Session) -> tuple[dict[Attribute, Any], str]:
        (key,) = nonce_key_objects(session)
        attributes = {
            attribute: key[attribute]
            for attribute in (
                Attribute.KEY_TYPE,
                Attribute.VALUE_LEN,
                Attribute.TOKEN,
                Attribute.PRIVATE,
                Attribute.SENSITIVE,
                Attribute.ALWAYS_SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.SIGN,
                Attribute.VERIFY,
                Attribute.ENCRYPT,
                Attribute.DECRYPT,
                Attribute.WRAP,
                Attribute.UNWRAP,
                Attribute.DERIVE,
                Attribute.COPYABLE,
                Attribute.MODIFIABLE,
            )
        }
        try:
            key[Attribute.VALUE]
        except pkcs11.PKCS11Error as exc:
            return attributes, type(exc).__name__
        return attributes, "readable"

    attributes, value = custody.pool.run_sync(read)
    assert attributes == {
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.VALUE_LEN: 32,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.ALWAYS_SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.NEVER_EXTRACTABLE: True,
        Attribute.SIGN: True,
        Attribute.VERIFY: False,
        Attribute.ENCRYPT: False,
        Attribute.DECRYPT: False,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
        Attribute.COPYABLE: False,
        Attribute.MODIFIABLE: False,
    }
    assert value == "AttributeSensitive"


def test_every_custody_on_the_token_derives_the_same_key(
    custody: Custody, fresh_custody: Callable[[], Custody]
) -> None:
    first, second = fresh_custody(), fresh_custody()
    first.ensure_ready()
    second.ensure_ready()  # and a second start creates nothing
    assert first.nonce_mac_key() == second.nonce_mac_key() == custody.nonce_mac_key()
    assert len(first.pool.run_sync(nonce_key_objects)) == 1
    # So a nonce one worker issues, another accepts.
    nonce, expires_at = Nonces(first.nonce_mac_key(), 300).issue("snp", NOW)
    assert Nonces(second.nonce_mac_key(), 300).check(nonce, "snp", NOW) == expires_at


def test_the_derived_key_never_prints(custody: Custody) -> None:
    key = custody.nonce_mac_key()
    assert repr(key) == str(key) == "SecretBytes('***')"
    assert key.reveal().hex() not in repr(vars(custody))


def test_a_custody_not_ready_has_no_nonce_key(fresh_custody: Callable[[], Custody]) -> None:
    with pytest.raises(HsmUnavailable, match="custody not ready"):
        fresh_custody().nonce_mac_key()


def test_another_token_derives_another_key(custody: Custody, other_token: dict[str, Any]) -> None:
    # A broker on a fresh token created its own nonce key, once in two starts...
    assert other_token["nonce_keys"] == 1
    # ...and its nonces are not ours.
    with pytest.raises(NonceUnknown, match="not issued by this broker for tee 'snp'"):
        Nonces(custody.nonce_mac_key(), 300).check(
            decode(str(other_token["nonce"])), "snp", datetime.now(UTC)
        )


# --- one object per label ----------------------------------------------------------------------


def _add_nonce_key(session: pkcs11.Session) -> list[Any]:
    return [
        session.generate_key(
            KeyType.GENERIC_SECRET,
            256,
            label=NONCE_KEY_LABEL,
            store=True,
            mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
            template={Attribute.SIGN: True, Attribute.SENSITIVE: True},
        )
    ]


def _add_kek_v1(session: pkcs11.Session) -> list[Any]:
    return [session.generate_key(KeyType.AES, 256, label="keybroker-kek-v1", store=True)]


def _add_signing_key(session: pkcs11.Session) -> list[Any]:
    parameters = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
    )
    public, private = parameters.generate_keypair(store=True, label=SIGNING_KEY_LABEL)
    return [public, private]


@pytest.mark.parametrize(
    ("add", "named"),
    [
        (_add_nonce_key, f"'{NONCE_KEY_LABEL}' x2"),
        (_add_kek_v1, "'keybroker-kek-v1' x2"),
        (_add_signing_key, f"'{SIGNING_KEY_LABEL}' x2, '{SIGNING_KEY_LABEL}' x2"),
    ],
)
def test_a_token_with_two_objects_under_one_label_is_refused(
    custody: Custody,
    fresh_custody: Callable[[], Custody],
    add: Callable[[pkcs11.Session], list[Any]],
    named: str,
) -> None:
    """What two processes racing on a fresh token could leave behind: the broker does not
    choose one (processes could choose differently), it refuses to start."""
    added = custody.pool.run_sync(add)
    try:
        with pytest.raises(ConfigurationError) as caught:
            fresh_custody().ensure_ready()
        assert caught.value.detail == (
            f"the token holds several objects under one label ({named}), 1 wanted each: "
            "processes could choose different keys, so the broker refuses to start"
        )
    finally:
        custody.pool.run_sync(lambda _session: [obj.destroy() for obj in added])
    fresh_custody().ensure_ready()  # one of each again


def test_the_nonce_key_is_never_chosen_among_several(custody: Custody) -> None:
    added = custody.pool.run_sync(_add_nonce_key)
    try:
        with pytest.raises(ConfigurationError) as caught:
            custody.pool.run_sync(derive_nonce_mac_key)
        assert caught.value.detail.startswith(
            f"the token holds 2 objects labelled '{NONCE_KEY_LABEL}', 1 wanted"
        )
    finally:
        custody.pool.run_sync(lambda _session: [obj.destroy() for obj in added])


def test_serve_prepares_the_token_once_in_the_supervisor(
    settings: Settings, custody: Custody
) -> None:
    """``keybroker serve --workers N`` makes the token ready before it starts any worker; on
    a ready token that changes nothing."""
    before = custody.pool.run_sync(lambda s: len(list(s.get_objects({Attribute.TOKEN: True}))))
    prepare_token(settings)
    after = custody.pool.run_sync(lambda s: len(list(s.get_objects({Attribute.TOKEN: True}))))
    assert after == before
    assert len(custody.pool.run_sync(nonce_key_objects)) == 1
    assert 1 in custody.kek_versions()
    signing = {
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.LABEL: SIGNING_KEY_LABEL,
        Attribute.TOKEN: True,
    }
    assert custody.pool.run_sync(lambda s: len(list(s.get_objects(signing)))) == 1
