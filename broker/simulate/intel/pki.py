"""The fake Intel PKI of the synthetic DCAP kit: its CAs, the PCK certificate and the CRLs.

It mirrors Intel's hierarchy: a "Fake Intel SGX Root CA" issues a "Fake Intel SGX PCK
Platform CA", which issues a PCK certificate carrying the SGX extension (FMSPC, PCE-ID, TCB
components, PCESVN, CPUSVN: :func:`sgx_extension_der`), and a "Fake Intel SGX TCB Signing"
certificate, whose key signs the collateral (``collateral.py``). Each CA signs its CRL.

The root is trusted only when passed as ``extra_roots`` (:meth:`IntelPki.extra_roots`, named
``insecure-test-intel-sim``). ``save``/``load`` keep the keys and certificates in a directory,
private keys 0600.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from broker.evidence.claims import Tee
from broker.evidence.dcap.pck import SGX_EXTENSION_OID
from broker.evidence.der import encode_tlv
from broker.evidence.trust import TrustedRoot, insecure_root
from broker.privatefiles import write_private_bytes
from broker.simulate.crl import without_next_update

SIM_ROOT_LABEL = "intel-sim"
PEM = serialization.Encoding.PEM
DAY = dt.timedelta(days=1)
_ECDSA = ec.ECDSA(hashes.SHA256())


# --- a minimal DER writer for the SGX extension ---------------------------------------------


def _oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return encode_tlv(0x06, bytes(body))


def _integer(value: int, tag: int = 0x02) -> bytes:
    return encode_tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _member(oid: str, value: bytes) -> bytes:
    return encode_tlv(0x30, _oid(oid) + value)


def sgx_extension_der(
    *,
    ppid: bytes,
    components: Sequence[int],
    pce_svn: int,
    cpu_svn: bytes,
    pce_id: bytes,
    fmspc: bytes,
    sgx_type: int = 0,
    platform_instance_id: bytes | None = None,
) -> bytes:
    """DER of the SGX extension value (PCK certificate profile §1.3.5)."""
    base = SGX_EXTENSION_OID
    tcb = b"".join(
        _member(f"{base}.2.{index}", _integer(svn)) for index, svn in enumerate(components, 1)
    )
    tcb += _member(f"{base}.2.17", _integer(pce_svn))
    tcb += _member(f"{base}.2.18", encode_tlv(0x04, cpu_svn))
    members = [
        _member(f"{base}.1", encode_tlv(0x04, ppid)),
        _member(f"{base}.2", encode_tlv(0x30, tcb)),
        _member(f"{base}.3", encode_tlv(0x04, pce_id)),
        _member(f"{base}.4", encode_tlv(0x04, fmspc)),
        _member(f"{base}.5", _integer(sgx_type, tag=0x0A)),
    ]
    if platform_instance_id is not None:
        members.append(_member(f"{base}.6", encode_tlv(0x04, platform_instance_id)))
        flags = b"".join(
            _member(f"{base}.7.{index}", encode_tlv(0x01, b"\xff" if on else b"\x00"))
            for index, on in ((1, True), (2, False), (3, True))
        )
        members.append(_member(f"{base}.7", encode_tlv(0x30, flags)))
    return encode_tlv(0x30, b"".join(members))


# --- the platform and its PKI ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Platform:
    """What the fake platform reports (PCK extensions, QE, TDX module)."""

    fmspc: bytes = bytes.fromhex("5a5a5a000000")
    pce_id: bytes = bytes(2)
    components: tuple[int, ...] = (5, 5, 13, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0)
    pce_svn: int = 13
    qe_svn: int = 8
    qe_mrsigner: bytes = bytes.fromhex("5a" * 32)
    tee_tcb_svn: bytes = bytes.fromhex("03000500000000000000000000000000")
    mr_seam: bytes = bytes.fromhex("5e" * 48)
    mr_signer_seam: bytes = bytes(48)

    @property
    def cpu_svn(self) -> bytes:
        return bytes(self.components)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name, value in asdict(self).items():
            doc[name] = value.hex() if isinstance(value, bytes) else value
        doc["components"] = list(self.components)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Platform:
        values: dict[str, Any] = {}
        for name, value in doc.items():
            if name == "components":
                values[name] = tuple(int(v) for v in value)
            elif isinstance(value, str):
                values[name] = bytes.fromhex(value)
            else:
                values[name] = int(value)
        return cls(**values)


_KEY_FILES = ("root", "platform_ca", "pck", "tcb_signing", "attestation")


@dataclass(frozen=True)
class IntelPki:
    """The kit's keys and certificates, and the platform its PCK certificate describes."""

    keys: Mapping[str, ec.EllipticCurvePrivateKey]
    certificates: Mapping[str, x509.Certificate]
    platform: Platform = field(default_factory=Platform)

    # -- creation and storage ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        now: dt.datetime,
        platform: Platform | None = None,
        validity: Mapping[str, tuple[dt.datetime, dt.datetime]] | None = None,
    ) -> Self:
        """A new kit at ``now``; ``validity`` overrides the (not before, not after) of any of
        ``root``, ``platform_ca``, ``pck``, ``tcb_signing`` (by default a year before ``now``
        until 9000, 5000, 2500 and 2000 days after it)."""
        platform = platform or Platform()
        keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in _KEY_FILES}
        not_before = now - 365 * DAY
        windows = {
            "root": (not_before, now + 9000 * DAY),
            "platform_ca": (not_before, now + 5000 * DAY),
            "pck": (not_before, now + 2500 * DAY),
            "tcb_signing": (not_before, now + 2000 * DAY),
            **(validity or {}),
        }
        root = _certificate(
            "Fake Intel SGX Root CA", keys["root"], None, keys["root"], windows["root"], ca=True
        )
        ca = _certificate(
            "Fake Intel SGX PCK Platform CA",
            keys["platform_ca"],
            root,
            keys["root"],
            windows["platform_ca"],
            ca=True,
        )
        signing = _certificate(
            "Fake Intel SGX TCB Signing",
            keys["tcb_signing"],
            root,
            keys["root"],
            windows["tcb_signing"],
        )
        pck = _pck_certificate(
            platform, keys["pck"], ca, keys["platform_ca"], now, validity=windows["pck"]
        )
        certificates = {"root": root, "platform_ca": ca, "pck": pck, "tcb_signing": signing}
        return cls(keys=keys, certificates=certificates, platform=platform)

    def save(self, directory: Path) -> None:
        """Write keys (0600), certificates and the platform description to ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, key in self.keys.items():
            pem = key.private_bytes(
                PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_private_bytes(directory / f"{name}.key", pem)
        for name, cert in self.certificates.items():
            (directory / f"{name}.pem").write_bytes(cert.public_bytes(PEM))
        (directory / "platform.json").write_text(json.dumps(self.platform.to_json(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Self:
        keys = {}
        for name in _KEY_FILES:
            key = serialization.load_pem_private_key(
                (directory / f"{name}.key").read_bytes(), password=None
            )
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{name}.key is not an EC private key")
            keys[name] = key
        certificates = {
            name: x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
            for name in ("root", "platform_ca", "pck", "tcb_signing")
        }
        platform = Platform.from_json(json.loads((directory / "platform.json").read_text()))
        return cls(keys=keys, certificates=certificates, platform=platform)

    def with_pck(self, platform: Platform, *, now: dt.datetime) -> Self:
        """The same roots and keys with a PCK certificate re-issued for ``platform``."""
        pck = _pck_certificate(
            platform,
            self.keys["pck"],
            self.certificates["platform_ca"],
            self.keys["platform_ca"],
            now,
        )
        return replace(self, certificates={**self.certificates, "pck": pck}, platform=platform)

    def with_pck_extension(self, extension: bytes, *, now: dt.datetime) -> Self:
        """The same kit with a PCK certificate whose SGX extension is ``extension`` verbatim
        (any bytes: the fuzz campaign reaches the extension parser through a valid chain)."""
        pck = _certificate(
            "Fake Intel SGX PCK Certificate",
            self.keys["pck"],
            self.certificates["platform_ca"],
            self.keys["platform_ca"],
            (now - 365 * DAY, now + 2500 * DAY),
            extension=extension,
        )
        return replace(self, certificates={**self.certificates, "pck": pck})

    def extra_roots(self) -> tuple[TrustedRoot, ...]:
        return (insecure_root(self.certificates["root"], SIM_ROOT_LABEL),)

    # -- certificates and CRLs --------------------------------------------------------------

    def pck_chain(self) -> bytes:
        return b"".join(
            self.certificates[name].public_bytes(PEM) for name in ("pck", "platform_ca", "root")
        )

    def tcb_signing_chain(self) -> bytes:
        return b"".join(
            self.certificates[name].public_bytes(PEM) for name in ("tcb_signing", "root")
        )

    def pck_crl(
        self,
        *,
        now: dt.datetime,
        revoked: Sequence[int] = (),
        days: int | None = 30,
        this_update: dt.datetime | None = None,
    ) -> bytes:
        """The PCK CA's DER CRL: thisUpdate a day before ``now`` unless given, nextUpdate
        ``days`` after ``now`` (none at all when ``days`` is None)."""
        return self._crl("platform_ca", now, revoked, days, this_update)

    def root_crl(
        self,
        *,
        now: dt.datetime,
        revoked: Sequence[int] = (),
        days: int | None = 365,
        this_update: dt.datetime | None = None,
    ) -> bytes:
        """The root's DER CRL, as :meth:`pck_crl`."""
        return self._crl("root", now, revoked, days, this_update)

    def _crl(
        self,
        issuer: str,
        now: dt.datetime,
        revoked: Sequence[int],
        days: int | None,
        this_update: dt.datetime | None,
    ) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificates[issuer].subject)
            .last_update(this_update or now - DAY)
            .next_update(now + (days or 0) * DAY)
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - DAY)
                .build()
            )
        crl = builder.sign(self.keys[issuer], hashes.SHA256())
        encoded = crl.public_bytes(serialization.Encoding.DER)
        if days is None:
            return without_next_update(encoded, lambda tbs: self.keys[issuer].sign(tbs, _ECDSA))
        return encoded


def qe_prod_id(tee: Tee) -> int:
    # Intel's QE has ISVPRODID 1; the TD Quoting Enclave has 2 (real QE Identities).
    return 2 if tee is Tee.TDX else 1


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256 (SHA-256) over ``data`` as ``r || s``, 32 bytes each: the form of every
    signature in a quote and in Intel's collateral."""
    r, s = decode_dss_signature(key.sign(data, _ECDSA))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _pck_certificate(
    platform: Platform,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    *,
    validity: tuple[dt.datetime, dt.datetime] | None = None,
) -> x509.Certificate:
    extension = sgx_extension_der(
        ppid=hashlib.sha256(b"ppid").digest()[:16],
        components=platform.components,
        pce_svn=platform.pce_svn,
        cpu_svn=platform.cpu_svn,
        pce_id=platform.pce_id,
        fmspc=platform.fmspc,
        platform_instance_id=hashlib.sha256(b"instance").digest()[:16],
    )
    return _certificate(
        "Fake Intel SGX PCK Certificate",
        key,
        ca,
        ca_key,
        validity or (now - 365 * DAY, now + 2500 * DAY),
        extension=extension,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keybroker test kit"),
        ]
    )


def _certificate(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    validity: tuple[dt.datetime, dt.datetime],
    *,
    ca: bool = False,
    extension: bytes | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name) if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if extension is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID), extension),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())
