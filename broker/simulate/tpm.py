"""A synthetic vTPM for tests and demos: a software attestation key (AK) that signs quotes as
a TPM does, a fake vTPM CA that certifies AKs, and measured-boot event logs.

* :class:`SoftwareAk` builds a TPMS_ATTEST (``broker.evidence.tpm.abi``, ``to_bytes``) over
  the PCR values given and signs it with RSASSA, RSAPSS or ECDSA, exactly the bytes a TPM
  signs for TPM2_Quote. Unlike a TPM's, its key can sign anything: tests use that to make the
  quotes a verifier must refuse.
* :class:`AkAuthority` is a root and an intermediate in the shape of Azure's and Google's AK
  PKIs; its root is trusted only as an insecure extra root (``insecure-test-<label>``).
* :func:`event_log` writes a TCG crypto-agile log (``EventLog.to_bytes``) and returns the
  PCR values it replays to, bank by bank; :func:`secure_boot_event`, :func:`efi_app_event`
  and :func:`grub_cmdline_event` are the events the boot facts are read from.

The real vTPM behind the simulated guest is swtpm (``keybroker_guest.tpm2``); this kit is
for the verifier's unit tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from broker.evidence.tpm.abi import (
    FIXED_TPM,
    HASH_NAMES,
    HASH_SIZES,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN_ENCRYPT,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    Alg,
    Attest,
    ClockInfo,
    EccCurve,
    PcrSelection,
    Public,
    QuoteInfo,
    Signature,
)
from broker.evidence.tpm.boot import (
    EFI_GLOBAL_VARIABLE,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_IPL,
    GRUB_KERNEL_CMDLINE,
)
from broker.evidence.tpm.eventlog import Event, EventLog, SpecId
from broker.evidence.tpm.quote import Quote
from broker.evidence.trust import TrustedRoot, insecure_root
from broker.privatefiles import write_private_bytes
from hsm.pubkey import b64url

AkKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_ORGANIZATION = "keybroker synthetic vTPM CA (insecure test chain)"
_HASHES: dict[int, hashes.HashAlgorithm] = {
    Alg.SHA256: hashes.SHA256(),
    Alg.SHA384: hashes.SHA384(),
    Alg.SHA512: hashes.SHA512(),
    Alg.SHA1: hashes.SHA1(),  # noqa: S303 - for quotes a verifier must refuse
}
#: The AK's TPMA_OBJECT: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth,
#: restricted, sign (0x00050072, as a GCE AK's).
AK_ATTRIBUTES = FIXED_TPM | 1 << 4 | SENSITIVE_DATA_ORIGIN | 1 << 6 | RESTRICTED | SIGN_ENCRYPT
DEFAULT_FIRMWARE_VERSION = 0x2020031200120003
NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2049, 12, 31, tzinfo=UTC)


def zero_pcrs(bank: int = Alg.SHA256, count: int = 24) -> dict[int, bytes]:
    return {index: bytes(HASH_SIZES[bank]) for index in range(count)}


@dataclass(frozen=True)
class SoftwareAk:
    """An attestation key in software, with the scheme it signs quotes with."""

    key: AkKey
    scheme: int = Alg.RSASSA
    hash_alg: int = Alg.SHA256

    @classmethod
    def generate(cls, scheme: int = Alg.RSASSA, hash_alg: int = Alg.SHA256) -> SoftwareAk:
        key: AkKey
        if scheme == Alg.ECDSA:
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key, scheme, hash_alg)

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        return self.key.public_key()

    def public(self) -> Public:
        """The AK's TPMT_PUBLIC, as the TPM would hold it."""
        public = self.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            exponent = 0 if numbers.e == 65537 else numbers.e
            modulus = numbers.n.to_bytes(public.key_size // 8, "big")
            return Public(
                Alg.RSA, Alg.SHA256, AK_ATTRIBUTES, b"", Alg.NULL.to_bytes(2, "big"),
                self.scheme, self.hash_alg, key_bits=public.key_size, exponent=exponent,
                modulus=modulus,
            )  # fmt: skip
        point = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        size = (len(point) - 1) // 2
        return Public(
            Alg.ECC, Alg.SHA256, AK_ATTRIBUTES, b"", Alg.NULL.to_bytes(2, "big"), Alg.ECDSA,
            self.hash_alg, curve=EccCurve.NIST_P256, kdf=Alg.NULL.to_bytes(2, "big"),
            x=point[1 : 1 + size], y=point[1 + size :],
        )  # fmt: skip

    def jwk(self, kid: str = "HCLAkPub") -> dict[str, object]:
        """The AK as Azure's runtime data lists it (RSA only)."""
        public = self.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("the runtime data's AK is an RSA key")
        numbers = public.public_numbers()
        return {
            "kid": kid,
            "key_ops": ["sign"],
            "kty": "RSA",
            "e": b64url(numbers.e.to_bytes(3, "big")),
            "n": b64url(numbers.n.to_bytes(public.key_size // 8, "big")),
        }

    def attest(
        self,
        pcrs: Mapping[int, Mapping[int, bytes]],
        extra_data: bytes,
        *,
        clock: ClockInfo | None = None,
        firmware_version: int = DEFAULT_FIRMWARE_VERSION,
        digest_alg: int | None = None,
    ) -> Attest:
        """The TPMS_ATTEST a TPM2_Quote of ``pcrs`` (bank -> index -> value) would sign."""
        selections = tuple(
            PcrSelection(bank, tuple(sorted(values))) for bank, values in pcrs.items()
        )
        concatenated = b"".join(pcrs[s.hash_alg][pcr] for s in selections for pcr in s.pcrs)
        name = HASH_NAMES[digest_alg or self.hash_alg]
        return Attest(
            magic=TPM_GENERATED_VALUE,
            type=TPM_ST_ATTEST_QUOTE,
            qualified_signer=self.public().name(),
            extra_data=extra_data,
            clock_info=clock or ClockInfo(123456789, 3, 0, safe=True),
            firmware_version=firmware_version,
            attested=QuoteInfo(selections, hashlib.new(name, concatenated).digest()),
        )

    def sign(self, message: bytes) -> Signature:
        """A TPMT_SIGNATURE of ``message`` with the AK's scheme."""
        algorithm = _HASHES[self.hash_alg]
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(algorithm)))
            size = (self.key.curve.key_size + 7) // 8
            return Signature(
                Alg.ECDSA, self.hash_alg, r=r.to_bytes(size, "big"), s=s.to_bytes(size, "big")
            )
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if self.scheme == Alg.RSASSA
            else padding.PSS(padding.MGF1(algorithm), algorithm.digest_size)
        )
        return Signature(self.scheme, self.hash_alg, rsa=self.key.sign(message, pad, algorithm))

    def quote(
        self,
        pcrs: Mapping[int, Mapping[int, bytes]],
        extra_data: bytes,
        *,
        clock: ClockInfo | None = None,
        firmware_version: int = DEFAULT_FIRMWARE_VERSION,
        digest_alg: int | None = None,
    ) -> Quote:
        """A signed quote of ``pcrs`` with ``extra_data`` (the rest: see :meth:`attest`)."""
        attest = self.attest(
            pcrs,
            extra_data,
            clock=clock,
            firmware_version=firmware_version,
            digest_alg=digest_alg,
        )
        message = attest.to_bytes()
        return Quote(message, self.sign(message), {b: dict(v) for b, v in pcrs.items()})

    def resign(self, quote: Quote, message: bytes) -> Quote:
        """``quote`` with another TPMS_ATTEST, signed (tests of content checks)."""
        return replace(quote, message=message, signature=self.sign(message))


# --- the AK PKI -------------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
        ]
    )


def _ca(
    subject: str, key: rsa.RSAPrivateKey, issuer: x509.Certificate | None, signer: rsa.RSAPrivateKey
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


@dataclass(frozen=True)
class AkAuthority:
    """A fake vTPM CA: a root and the intermediate that issues AK certificates."""

    root_key: rsa.RSAPrivateKey
    root_certificate: x509.Certificate
    issuer_key: rsa.RSAPrivateKey
    issuer: x509.Certificate

    @classmethod
    def generate(cls) -> AkAuthority:
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        root = _ca("keybroker test vTPM root", root_key, None, root_key)
        issuer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuer = _ca("keybroker test vTPM CA - 01", issuer_key, root, root_key)
        return cls(root_key, root, issuer_key, issuer)

    def root(self, label: str = "vtpm-ca") -> TrustedRoot:
        return insecure_root(self.root_certificate, label)

    def certify(
        self,
        key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        *,
        not_before: datetime = NOT_BEFORE,
        not_after: datetime = NOT_AFTER,
        ca: bool = False,
    ) -> x509.Certificate:
        """An AK certificate for ``key``, issued by the intermediate (empty subject, as
        Google's)."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.issuer.subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("vtpm.test")]), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            )
        return builder.sign(self.issuer_key, hashes.SHA256())

    def chain_der(self) -> bytes:
        return self.issuer.public_bytes(serialization.Encoding.DER)

    def chain_pem(self) -> bytes:
        return self.issuer.public_bytes(serialization.Encoding.PEM)

    def save(self, directory: Path | str) -> None:
        """Write the certificates as PEM and the keys as PKCS#8 (mode 0600)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for name, certificate, key in (
            ("root", self.root_certificate, self.root_key),
            ("issuer", self.issuer, self.issuer_key),
        ):
            (folder / f"{name}.pem").write_bytes(
                certificate.public_bytes(serialization.Encoding.PEM)
            )
            write_private_bytes(
                folder / f"{name}.key",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )

    @classmethod
    def load(cls, directory: Path | str) -> AkAuthority:
        folder = Path(directory)
        keys = [
            serialization.load_pem_private_key((folder / f"{name}.key").read_bytes(), None)
            for name in ("root", "issuer")
        ]
        root_key, issuer_key = keys
        if not isinstance(root_key, rsa.RSAPrivateKey) or not isinstance(
            issuer_key, rsa.RSAPrivateKey
        ):
            raise ValueError(f"{folder}: the vTPM CA keys are not RSA")
        root, issuer = (
            x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
            for name in ("root", "issuer")
        )
        return cls(root_key, root, issuer_key, issuer)


# --- event logs -------------------------------------------------------------------------------

LogEvent = tuple[int, int, bytes, bytes | None]
"""(PCR, event type, event data, the bytes measured: None for the data itself)."""

#: The banks a synthetic log records, as a PC Client firmware's does.
DEFAULT_BANKS = (Alg.SHA1, Alg.SHA256, Alg.SHA384)


def event_log(
    events: Sequence[LogEvent], banks: Sequence[int] = DEFAULT_BANKS
) -> tuple[bytes, dict[int, dict[int, bytes]]]:
    """A crypto-agile log of ``events``, and the values of PCR0-23 it replays to in each
    bank (PCRs no event extends are zero)."""
    spec = SpecId(0, (0, 2, 0), 2, tuple((bank, HASH_SIZES[bank]) for bank in banks))
    entries = []
    for pcr, event_type, data, measured in events:
        content = data if measured is None else measured
        digests = tuple((bank, hashlib.new(HASH_NAMES[bank], content).digest()) for bank in banks)
        entries.append(Event(pcr, event_type, digests, data))
    log = EventLog(spec, tuple(entries))
    pcrs = {}
    for bank in banks:
        values = zero_pcrs(bank)
        values.update(log.replay(bank))
        pcrs[bank] = values
    return log.to_bytes(), pcrs


def secure_boot_event(enabled: bool) -> LogEvent:
    """The EV_EFI_VARIABLE_DRIVER_CONFIG event of the SecureBoot variable (PCR7)."""
    name = "SecureBoot".encode("utf-16-le")
    value = b"\x01" if enabled else b"\x00"
    data = (
        EFI_GLOBAL_VARIABLE
        + (len(name) // 2).to_bytes(8, "little")
        + len(value).to_bytes(8, "little")
        + name
        + value
    )
    return (7, EV_EFI_VARIABLE_DRIVER_CONFIG, data, None)


def efi_app_event(image: bytes) -> LogEvent:
    """An EV_EFI_BOOT_SERVICES_APPLICATION (PCR4): the digest is the image's, the data a
    stand-in for its UEFI_IMAGE_LOAD_EVENT."""
    return (4, EV_EFI_BOOT_SERVICES_APPLICATION, b"\x00" * 32, image)


def grub_cmdline_event(cmdline: str) -> LogEvent:
    """GRUB's ``kernel_cmdline:`` EV_IPL in PCR8: the digest covers the command line only."""
    text = cmdline.encode()
    return (8, EV_IPL, GRUB_KERNEL_CMDLINE + text + b"\x00", text)


#: A boot a demo guest can show: secure boot on, shim, GRUB and a kernel, its command line.
DEMO_BOOT: tuple[LogEvent, ...] = (
    (0, 0x00000008, b"keybroker synthetic firmware v1", None),  # EV_S_CRTM_VERSION
    secure_boot_event(True),
    (7, 0x00000004, b"\x00" * 4, None),  # EV_SEPARATOR
    efi_app_event(b"keybroker synthetic shim"),
    efi_app_event(b"keybroker synthetic grub"),
    grub_cmdline_event("/vmlinuz root=/dev/vda1 ro console=ttyS0"),
    efi_app_event(b"keybroker synthetic kernel"),
)
