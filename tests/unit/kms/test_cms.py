"""``CiphertextForRecipient`` (hsm/cms.py) read back by an independent CMS parser
(asn1crypto) and opened with the recipient's key: the structure the Nitro SDK parses, the
content exactly the plaintext, and the DER primitives on their edge cases."""

from __future__ import annotations

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto.core import ObjectIdentifier
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hsm import cms

KEY = rsa.generate_private_key(65537, 2048)
OAEP_SHA256 = asymmetric.OAEP(
    mgf=asymmetric.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


def parsed(der: bytes) -> asn1_cms.EnvelopedData:
    info = asn1_cms.ContentInfo.load(der)
    assert info["content_type"].native == "enveloped_data"
    enveloped: asn1_cms.EnvelopedData = info["content"]
    return enveloped


def open_envelope(der: bytes, key: rsa.RSAPrivateKey = KEY) -> bytes:
    enveloped = parsed(der)
    recipient = enveloped["recipient_infos"][0].chosen
    cek = key.decrypt(recipient["encrypted_key"].native, OAEP_SHA256)
    content = enveloped["encrypted_content_info"]
    iv = content["content_encryption_algorithm"].encryption_iv
    decryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    padded = decryptor.update(content["encrypted_content"].native) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


@pytest.mark.parametrize(
    "plaintext", [b"", b"k" * 15, b"k" * 16, b"a 32-byte data key, exactly...!!"]
)
def test_the_recipient_opens_exactly_the_plaintext(plaintext: bytes) -> None:
    envelope = cms.seal(plaintext, KEY.public_key())
    assert open_envelope(envelope.der) == plaintext
    content = parsed(envelope.der)["encrypted_content_info"]["encrypted_content"].native
    assert len(content) == (len(plaintext) // 16 + 1) * 16  # RFC 5652 §6.3: always padded
    assert plaintext == b"" or plaintext not in envelope.der


def test_the_structure_is_what_the_nitro_sdk_parses() -> None:
    enveloped = parsed(cms.seal(b"data key", KEY.public_key()).der)
    assert enveloped["version"].native == "v2"
    assert enveloped["originator_info"].native is None
    assert enveloped["unprotected_attrs"].native is None
    (choice,) = enveloped["recipient_infos"]
    assert choice.name == "ktri"
    recipient = choice.chosen
    assert recipient["version"].native == "v2"
    assert recipient["rid"].name == "subject_key_identifier"
    # RFC 5280 §4.2.1.2 method 1, as cryptography's x509 computes it
    expected = x509.SubjectKeyIdentifier.from_public_key(KEY.public_key()).digest
    assert recipient["rid"].native == expected == cms.subject_key_identifier(KEY.public_key())
    algorithm = recipient["key_encryption_algorithm"]
    assert algorithm["algorithm"].native == "rsaes_oaep"
    parameters = algorithm["parameters"].native
    assert parameters["hash_algorithm"]["algorithm"] == "sha256"
    assert parameters["mask_gen_algorithm"]["algorithm"] == "mgf1"
    assert parameters["mask_gen_algorithm"]["parameters"]["algorithm"] == "sha256"
    assert parameters["p_source_algorithm"]["parameters"] == b""  # the default: empty label
    content = enveloped["encrypted_content_info"]
    assert content["content_type"].native == "data"
    assert content["content_encryption_algorithm"]["algorithm"].native == "aes256_cbc"
    assert len(content["content_encryption_algorithm"].encryption_iv) == 16


def test_each_envelope_has_its_own_content_key_and_iv() -> None:
    first, second = (parsed(cms.seal(b"same", KEY.public_key()).der) for _ in range(2))
    for part in ("encrypted_content_info", "recipient_infos"):
        assert first[part].dump() != second[part].dump()


def test_another_key_cannot_open_it() -> None:
    envelope = cms.seal(b"secret", KEY.public_key())
    with pytest.raises(ValueError, match="Decryption failed"):
        open_envelope(envelope.der, rsa.generate_private_key(65537, 2048))


def test_the_envelope_says_where_the_plaintext_was_and_shows_no_bytes() -> None:
    envelope = cms.seal(b"secret", KEY.public_key())
    assert envelope.exposure() == {
        "plaintext_in_broker": True,
        "envelope": {
            "format": "cms",
            "key_encryption": "RSAES_OAEP_SHA_256",
            "content_encryption": "AES-256-CBC",
        },
    }
    assert repr(envelope) == (f"CmsEnvelope(<{len(envelope.der)} bytes>, plaintext_in_broker=True)")


# --- the DER primitives (X.690 §8, §10) ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "020100"), (2, "020102"), (127, "02017f"), (128, "02020080"), (256, "02020100")],
)
def test_integers_are_minimal_and_positive(value: int, encoded: str) -> None:
    assert cms.integer(value).hex() == encoded


def test_negative_integers_are_refused() -> None:
    with pytest.raises(ValueError, match="only non-negative integers are written here"):
        cms.integer(-1)


@pytest.mark.parametrize(
    ("size", "header"),
    [(0, "0400"), (127, "047f"), (128, "048180"), (255, "0481ff"), (256, "04820100")],
)
def test_lengths_switch_to_the_long_form_at_128(size: int, header: str) -> None:
    encoded = cms.octet_string(bytes(size))
    assert encoded.hex().startswith(header)
    assert len(encoded) == len(header) // 2 + size


@pytest.mark.parametrize(
    ("dotted", "encoded"),
    [
        (cms.ID_ENVELOPED_DATA, "06092a864886f70d010703"),
        (cms.ID_RSAES_OAEP, "06092a864886f70d010107"),
        (cms.ID_AES256_CBC, "060960864801650304012a"),
        (cms.ID_SHA256, "0609608648016503040201"),
    ],
)
def test_object_identifiers(dotted: str, encoded: str) -> None:
    assert cms.oid(dotted).hex() == encoded == ObjectIdentifier(dotted).dump().hex()


def test_an_arc_of_many_base_128_digits() -> None:
    """X.690 §8.19.2: 2^28 + 1 takes five digits, all but the last with the high bit set."""
    dotted = f"1.2.{2**28 + 1}.840"
    assert cms.oid(dotted) == ObjectIdentifier(dotted).dump()


def test_set_of_is_sorted_as_der_requires() -> None:
    assert cms.set_of(b"\x02\x01\x05", b"\x02\x01\x01").hex() == "3106020101020105"
    assert cms.context(0, b"\x01", constructed=False).hex() == "800101"
    assert cms.context(1, b"\x01", constructed=True).hex() == "a10101"
