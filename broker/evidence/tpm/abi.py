"""TPM 2.0 structures a quote is made of: bytes <-> dataclasses, no judgement.

Layouts are those of the TPM 2.0 Library specification, Part 2 ("Structures"), marshalled
big-endian as Part 1 ("Marshaling") prescribes; a ``TPM2B_`` is a 16-bit size then that
many bytes. Parsed here:

* ``TPMS_ATTEST`` (magic, type, qualifiedSigner, extraData, clockInfo, firmwareVersion,
  attested), with ``TPMS_QUOTE_INFO`` (pcrSelect, pcrDigest) as its ``attested`` member when
  the type is ``TPM_ST_ATTEST_QUOTE``; other types keep their ``attested`` bytes verbatim;
* ``TPML_PCR_SELECTION`` / ``TPMS_PCR_SELECTION`` (hash, sizeofSelect, pcrSelect bitmap);
* ``TPMT_SIGNATURE`` for RSASSA, RSAPSS (``TPMS_SIGNATURE_RSA``) and ECDSA
  (``TPMS_SIGNATURE_ECC``);
* ``TPMT_PUBLIC`` for RSA and ECC keys, whose Name (``nameAlg || H(TPMT_PUBLIC)``) is what a
  quote's qualifiedSigner names.

Every structure has a ``parse_`` function (the whole input, nothing after it) and
``to_bytes``, its exact inverse; deciding whether a value is acceptable is :mod:`.verify`'s
job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.errors import MalformedEvidence
from broker.evidence.dcap.reader import ByteReader

#: TPM_GENERATED_VALUE (Part 2, TPM_GENERATED): every structure the TPM signs about itself
#: starts with it, and the TPM refuses to sign external data that does.
TPM_GENERATED_VALUE = 0xFF544347
#: TPM_ST_ATTEST_QUOTE (Part 2, TPM_ST): the structure tag of a TPM2_Quote's TPMS_ATTEST.
TPM_ST_ATTEST_QUOTE = 0x8018
#: PCR_SELECT_MAX of a PC Client TPM: 24 PCRs, 3 bytes of bitmap (PC Client Platform TPM
#: Profile); a selection may name up to 32 bytes, which no PC Client TPM uses.
PCR_SELECT_MAX = 32


class Alg(IntEnum):
    """TPM_ALG_ID values used here (TCG Algorithm Registry)."""

    RSA = 0x0001
    SHA1 = 0x0004
    AES = 0x0006
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    NULL = 0x0010
    RSASSA = 0x0014
    RSAPSS = 0x0016
    ECDSA = 0x0018
    ECC = 0x0023
    CFB = 0x0043


#: Digest sizes of the hash algorithms a PC Client TPM implements.
HASH_SIZES: dict[int, int] = {Alg.SHA1: 20, Alg.SHA256: 32, Alg.SHA384: 48, Alg.SHA512: 64}
#: The names keybroker gives the PCR banks in bundles and claims (``pcrs.sha256``).
HASH_NAMES: dict[int, str] = {
    Alg.SHA1: "sha1",
    Alg.SHA256: "sha256",
    Alg.SHA384: "sha384",
    Alg.SHA512: "sha512",
}
HASH_IDS: dict[str, int] = {name: alg for alg, name in HASH_NAMES.items()}


class EccCurve(IntEnum):
    """TPM_ECC_CURVE values for the curves AKs use (Part 2, TPM_ECC_CURVE)."""

    NIST_P256 = 0x0003
    NIST_P384 = 0x0004


_CURVES: dict[int, ec.EllipticCurve] = {
    EccCurve.NIST_P256: ec.SECP256R1(),
    EccCurve.NIST_P384: ec.SECP384R1(),
}


def alg_name(alg: int) -> str:
    """``sha256`` for a hash, the registry name for another algorithm, else hex."""
    if alg in HASH_NAMES:
        return HASH_NAMES[alg]
    try:
        return Alg(alg).name
    except ValueError:
        return f"{alg:#06x}"


def _reader(data: bytes, where: str) -> ByteReader:
    return ByteReader(bytes(data), where, byteorder="big")


def _sized(reader: ByteReader, what: str) -> bytes:
    """A TPM2B_ body: its 16-bit size, then that many bytes."""
    return reader.take(reader.u16(f"{what}.size"), what)


def _b(value: bytes) -> bytes:
    """The TPM2B_ encoding of ``value``."""
    return len(value).to_bytes(2, "big") + value


# --- PCR selections ---------------------------------------------------------------------------


#: The bits set in each byte value, lowest first: pcrSelect[i / 8] bit (i % 8) selects PCR i.
_BITS = tuple(tuple(bit for bit in range(8) if value >> bit & 1) for value in range(256))


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """TPMS_PCR_SELECTION: one bank and the PCRs selected in it, lowest first."""

    hash_alg: int
    pcrs: tuple[int, ...]
    size_of_select: int = 3
    """Bytes of the pcrSelect bitmap (3 for 24 PCRs); kept for an exact ``to_bytes``."""

    def bitmap(self) -> bytes:
        bits = bytearray(self.size_of_select)
        for pcr in self.pcrs:
            # pcrSelect[i / 8] bit (i % 8) selects PCR i (Part 2, TPMS_PCR_SELECTION)
            bits[pcr // 8] |= 1 << (pcr % 8)
        return bytes(bits)

    @classmethod
    def read(cls, reader: ByteReader, what: str) -> PcrSelection:
        hash_alg = reader.u16(f"{what}.hash")
        size = reader.uint(1, f"{what}.sizeofSelect")
        if size > PCR_SELECT_MAX:
            raise MalformedEvidence(
                f"{reader.where}: {what}.sizeofSelect {size} > PCR_SELECT_MAX {PCR_SELECT_MAX}"
            )
        bitmap = reader.take(size, f"{what}.pcrSelect")
        pcrs = tuple(8 * index + bit for index, byte in enumerate(bitmap) for bit in _BITS[byte])
        return cls(hash_alg, pcrs, size)

    def to_bytes(self) -> bytes:
        return self.hash_alg.to_bytes(2, "big") + bytes([self.size_of_select]) + self.bitmap()


def _read_selection_list(reader: ByteReader, what: str) -> tuple[PcrSelection, ...]:
    """TPML_PCR_SELECTION: a 32-bit count, then that many TPMS_PCR_SELECTION."""
    count = reader.u32(f"{what}.count")
    if count > len(HASH_SIZES):  # HASH_COUNT: one selection per implemented bank at most
        raise MalformedEvidence(f"{reader.where}: {what}.count {count} > {len(HASH_SIZES)} banks")
    return tuple(PcrSelection.read(reader, f"{what}[{i}]") for i in range(count))


def _selection_list_bytes(selections: tuple[PcrSelection, ...]) -> bytes:
    return len(selections).to_bytes(4, "big") + b"".join(s.to_bytes() for s in selections)


# --- TPMS_ATTEST ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClockInfo:
    """TPMS_CLOCK_INFO: milliseconds the TPM has been powered, and its reset counters."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    """Whether the clock value was never reported ahead of what the TPM has stored."""


@dataclass(frozen=True, slots=True)
class QuoteInfo:
    """TPMS_QUOTE_INFO: the PCRs quoted and the digest of their values."""

    pcr_select: tuple[PcrSelection, ...]
    pcr_digest: bytes

    def to_bytes(self) -> bytes:
        return _selection_list_bytes(self.pcr_select) + _b(self.pcr_digest)


@dataclass(frozen=True, slots=True)
class Attest:
    """TPMS_ATTEST, the structure a TPM signs for TPM2_Quote (and its other attestations)."""

    magic: int
    type: int
    qualified_signer: bytes
    """TPM2B_NAME of the signing key: nameAlg (2 bytes) || H(TPMT_PUBLIC)."""
    extra_data: bytes
    """TPM2B_DATA: the caller's qualifying data (keybroker's binding digest)."""
    clock_info: ClockInfo
    firmware_version: int
    attested: QuoteInfo | bytes
    """TPMS_QUOTE_INFO for a quote; the TPMU_ATTEST bytes verbatim for any other type."""

    def to_bytes(self) -> bytes:
        attested = (
            self.attested.to_bytes() if isinstance(self.attested, QuoteInfo) else self.attested
        )
        clock = self.clock_info
        return (
            self.magic.to_bytes(4, "big")
            + self.type.to_bytes(2, "big")
            + _b(self.qualified_signer)
            + _b(self.extra_data)
            + clock.clock.to_bytes(8, "big")
            + clock.reset_count.to_bytes(4, "big")
            + clock.restart_count.to_bytes(4, "big")
            + bytes([int(clock.safe)])
            + self.firmware_version.to_bytes(8, "big")
            + attested
        )


def parse_attest(data: bytes) -> Attest:
    reader = _reader(data, "TPMS_ATTEST")
    magic = reader.u32("magic")
    kind = reader.u16("type")
    signer = _sized(reader, "qualifiedSigner")
    extra = _sized(reader, "extraData")
    clock = ClockInfo(
        clock=reader.uint(8, "clockInfo.clock"),
        reset_count=reader.u32("clockInfo.resetCount"),
        restart_count=reader.u32("clockInfo.restartCount"),
        safe=_yes_no(reader, "clockInfo.safe"),
    )
    firmware = reader.uint(8, "firmwareVersion")
    attested: QuoteInfo | bytes
    if kind == TPM_ST_ATTEST_QUOTE:
        selections = _read_selection_list(reader, "attested.quote.pcrSelect")
        attested = QuoteInfo(selections, _sized(reader, "attested.quote.pcrDigest"))
        reader.expect_end("attested.quote")
    else:
        attested = reader.rest()
    return Attest(magic, kind, signer, extra, clock, firmware, attested)


def _yes_no(reader: ByteReader, what: str) -> bool:
    value = reader.uint(1, what)
    if value > 1:  # TPMI_YES_NO: NO (0) or YES (1)
        raise MalformedEvidence(f"{reader.where}: {what} {value} is not TPMI_YES_NO (0 or 1)")
    return value == 1


# --- TPMT_SIGNATURE ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """TPMT_SIGNATURE of an RSASSA, RSAPSS or ECDSA key (the schemes an AK signs with)."""

    sig_alg: int
    hash_alg: int
    rsa: bytes = b""
    """TPMS_SIGNATURE_RSA.sig (RSASSA, RSAPSS)."""
    r: bytes = b""
    """TPMS_SIGNATURE_ECC.signatureR (ECDSA)."""
    s: bytes = b""
    """TPMS_SIGNATURE_ECC.signatureS (ECDSA)."""

    def to_bytes(self) -> bytes:
        head = self.sig_alg.to_bytes(2, "big") + self.hash_alg.to_bytes(2, "big")
        if self.sig_alg == Alg.ECDSA:
            return head + _b(self.r) + _b(self.s)
        return head + _b(self.rsa)


def parse_signature(data: bytes) -> Signature:
    reader = _reader(data, "TPMT_SIGNATURE")
    sig_alg = reader.u16("sigAlg")
    if sig_alg in (Alg.RSASSA, Alg.RSAPSS):
        hash_alg = reader.u16("signature.hash")
        signature = Signature(sig_alg, hash_alg, rsa=_sized(reader, "signature.sig"))
    elif sig_alg == Alg.ECDSA:
        hash_alg = reader.u16("signature.hash")
        r = _sized(reader, "signature.signatureR")
        signature = Signature(sig_alg, hash_alg, r=r, s=_sized(reader, "signature.signatureS"))
    else:
        raise MalformedEvidence(
            f"TPMT_SIGNATURE: sigAlg {alg_name(sig_alg)} is not RSASSA, RSAPSS or ECDSA"
        )
    reader.expect_end("the signature")
    return signature


# --- TPMT_PUBLIC ------------------------------------------------------------------------------

#: TPMA_OBJECT bits (Part 2, TPMA_OBJECT) that make a key an attestation key.
FIXED_TPM = 1 << 1
SENSITIVE_DATA_ORIGIN = 1 << 5
RESTRICTED = 1 << 16
SIGN_ENCRYPT = 1 << 18


@dataclass(frozen=True, slots=True)
class Public:
    """TPMT_PUBLIC of an RSA or ECC key."""

    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    symmetric: bytes
    """TPMT_SYM_DEF_OBJECT, verbatim (TPM_ALG_NULL for a signing key)."""
    scheme: int
    scheme_hash: int | None
    """The scheme's hashAlg; None when the scheme is TPM_ALG_NULL."""
    key_bits: int = 0
    """RSA: keyBits."""
    exponent: int = 0
    """RSA: exponent as marshalled (0 means 65537)."""
    modulus: bytes = b""
    curve: int = 0
    """ECC: curveID."""
    kdf: bytes = b""
    """ECC: TPMT_KDF_SCHEME, verbatim."""
    x: bytes = b""
    y: bytes = b""

    def to_bytes(self) -> bytes:
        out = (
            self.type.to_bytes(2, "big")
            + self.name_alg.to_bytes(2, "big")
            + self.attributes.to_bytes(4, "big")
            + _b(self.auth_policy)
            + self.symmetric
            + self.scheme.to_bytes(2, "big")
        )
        if self.scheme_hash is not None:
            out += self.scheme_hash.to_bytes(2, "big")
        if self.type == Alg.RSA:
            out += self.key_bits.to_bytes(2, "big") + self.exponent.to_bytes(4, "big")
            return out + _b(self.modulus)
        return out + self.curve.to_bytes(2, "big") + self.kdf + _b(self.x) + _b(self.y)

    def name(self) -> bytes:
        """The key's Name: nameAlg || H_nameAlg(TPMT_PUBLIC) (Part 1, "Names")."""
        size = HASH_SIZES.get(self.name_alg)
        if size is None:
            raise MalformedEvidence(f"TPMT_PUBLIC: nameAlg {alg_name(self.name_alg)} is no hash")
        digest = hashlib.new(HASH_NAMES[self.name_alg], self.to_bytes()).digest()
        return self.name_alg.to_bytes(2, "big") + digest

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The key as pyca/cryptography reads it; ``MalformedEvidence`` when it is not one."""
        try:
            if self.type == Alg.RSA:
                exponent = self.exponent or 65537  # Part 2, TPMS_RSA_PARMS: 0 = 2^16 + 1
                modulus = int.from_bytes(self.modulus, "big")
                return rsa.RSAPublicNumbers(exponent, modulus).public_key()
            curve = _CURVES.get(self.curve)
            if curve is None:
                raise MalformedEvidence(
                    f"TPMT_PUBLIC: curveID {self.curve:#06x} is not NIST P-256 or P-384"
                )
            point = b"\x04" + self.x + self.y
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        except ValueError as exc:
            raise MalformedEvidence(f"TPMT_PUBLIC: unique is not a usable key: {exc}") from None


def parse_public(data: bytes) -> Public:
    reader = _reader(data, "TPMT_PUBLIC")
    kind = reader.u16("type")
    name_alg = reader.u16("nameAlg")
    attributes = reader.u32("objectAttributes")
    policy = _sized(reader, "authPolicy")
    symmetric = _symmetric(reader)
    scheme = reader.u16("parameters.scheme.scheme")
    scheme_hash = None if scheme == Alg.NULL else reader.u16("parameters.scheme.details")
    if kind == Alg.RSA:
        bits = reader.u16("parameters.keyBits")
        exponent = reader.u32("parameters.exponent")
        modulus = _sized(reader, "unique.rsa")
        public = Public(
            kind, name_alg, attributes, policy, symmetric, scheme, scheme_hash,
            key_bits=bits, exponent=exponent, modulus=modulus,
        )  # fmt: skip
    elif kind == Alg.ECC:
        curve = reader.u16("parameters.curveID")
        kdf_scheme = reader.take(2, "parameters.kdf.scheme")
        kdf = kdf_scheme
        if int.from_bytes(kdf_scheme, "big") != Alg.NULL:
            kdf += reader.take(2, "parameters.kdf.details")
        x = _sized(reader, "unique.ecc.x")
        public = Public(
            kind, name_alg, attributes, policy, symmetric, scheme, scheme_hash,
            curve=curve, kdf=kdf, x=x, y=_sized(reader, "unique.ecc.y"),
        )  # fmt: skip
    else:
        raise MalformedEvidence(f"TPMT_PUBLIC: type {alg_name(kind)} is not RSA or ECC")
    reader.expect_end("the public area")
    return public


def _symmetric(reader: ByteReader) -> bytes:
    """TPMT_SYM_DEF_OBJECT: an algorithm, then keyBits and mode unless it is TPM_ALG_NULL."""
    algorithm = reader.take(2, "parameters.symmetric.algorithm")
    if int.from_bytes(algorithm, "big") == Alg.NULL:
        return algorithm
    return algorithm + reader.take(4, "parameters.symmetric.keyBits and mode")
