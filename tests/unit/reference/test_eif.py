"""Nitro PCRs of enclave image files built here per the EIF format (version 4)."""

from __future__ import annotations

import datetime
import hashlib
import struct
import zlib
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from broker.reference.computed import ArtifactInvalid
from broker.reference.eif import compute_nitro, parse_eif, pcrs

KERNEL, CMDLINE, RAMDISK, SIGNATURE = 1, 2, 3, 4
HEADER_SIZE = 548


def build_eif(sections: list[tuple[int, bytes]], *, magic: bytes = b".eif") -> bytes:
    offsets, sizes, body = [], [], b""
    for kind, data in sections:
        offsets.append(HEADER_SIZE + len(body))
        sizes.append(len(data))
        body += struct.pack(">HHQ", kind, 0, len(data)) + data
    pad = [0] * (32 - len(sections))
    head = struct.pack(
        ">4sHHQQHH32Q32QI", magic, 4, 0, 512 << 20, 2, 0, len(sections),
        *(offsets + pad), *(sizes + pad), 0,
    )  # fmt: skip
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + struct.pack(">I", crc) + body


def pcr(*parts: bytes) -> bytes:
    return hashlib.sha384(bytes(48) + hashlib.sha384(b"".join(parts)).digest()).digest()


def signing_certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "enclave signer")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )


SECTIONS = [
    (KERNEL, b"kernel image " * 100),
    (CMDLINE, b"reboot=k panic=30 pci=off nomodules console=ttyS0"),
    (RAMDISK, b"bootstrap ramdisk " * 50),
    (RAMDISK, b"application ramdisk " * 70),
]


def test_pcrs_of_an_unsigned_image() -> None:
    kernel, cmdline, boot, app = (data for _, data in SECTIONS)
    values = pcrs(parse_eif(build_eif(SECTIONS)))
    assert values == {
        0: pcr(kernel, cmdline, boot, app),
        1: pcr(kernel, cmdline, boot),
        2: pcr(app),
    }


def test_pcr8_is_the_signing_certificate() -> None:
    certificate = signing_certificate()
    pem = list(certificate.public_bytes(Encoding.PEM))  # serde_cbor writes Vec<u8> as a list
    section = cbor2.dumps([{"signing_certificate": pem, "signature": list(b"cose")}])
    values = pcrs(parse_eif(build_eif([*SECTIONS, (SIGNATURE, section)])))
    assert values[8] == pcr(certificate.public_bytes(Encoding.DER))
    assert values[0] == pcrs(parse_eif(build_eif(SECTIONS)))[0]  # the signature is not image


def test_compute_nitro_writes_pcrs_as_reference_claims(tmp_path: Path) -> None:
    path = tmp_path / "enclave.eif"
    path.write_bytes(build_eif(SECTIONS))
    computed = compute_nitro(path, source="git+https://example.test/enclave@0123abc")
    assert list(computed.values) == ["pcrs.0", "pcrs.1", "pcrs.2"]
    assert computed.values["pcrs.2"] == pcr(SECTIONS[3][1]).hex()
    assert computed.provenance.parameters == (("eif_version", 4),)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


GOOD = build_eif(SECTIONS)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (build_eif(SECTIONS, magic=b"EIF."), "EIF magic is b'EIF.', not b'.eif'"),
        (b".eif" + bytes(10), "14 bytes is shorter than the 548-byte EIF header"),
        (
            _flip(GOOD, HEADER_SIZE + 20),
            f"EIF CRC-32 is {zlib.crc32(GOOD[548:], zlib.crc32(GOOD[:544])):#010x} in the header, "
            f"{zlib.crc32(_flip(GOOD, 568)[548:], zlib.crc32(GOOD[:544])):#010x} over the file",
        ),
        (build_eif([(KERNEL, b"k"), (6, b"?")]), "EIF section 1 has the invalid type 6"),
        (build_eif([(CMDLINE, b"c"), (RAMDISK, b"r")]),
         "an EIF needs one kernel section and at least one ramdisk"),
    ],
)  # fmt: skip
def test_malformed_images_are_refused(image: bytes, message: str) -> None:
    with pytest.raises(ArtifactInvalid) as refused:
        parse_eif(image)
    assert refused.value.detail == message


def test_a_truncated_image_is_refused() -> None:
    image = GOOD[:-10]
    head = image[:544]
    recrc = head + struct.pack(">I", zlib.crc32(image[548:], zlib.crc32(head))) + image[548:]
    with pytest.raises(ArtifactInvalid) as refused:
        parse_eif(recrc)
    assert refused.value.detail == "EIF section 3 runs past the end of the file"
