"""Verify TPM2_Quote results with the attestation key (AK) that signed them.

A quote is a TPMS_ATTEST (the ``message``), its TPMT_SIGNATURE, and the values of the PCRs
it selects, which the verifier receives separately: the TPM signs only their digest. For
each quote, in this order (each step raises):

1. the signature over the TPMS_ATTEST bytes as received: RSASSA-PKCS1-v1_5 or RSASSA-PSS with
   an RSA AK, ECDSA with a P-256 or P-384 AK, hash SHA-256, SHA-384 or SHA-512 (TPM 2.0
   Library Part 1, "Signature Operations"); SHA-1 is refused (``unsupported``), a bad
   signature is ``signature-invalid``;
2. then its content: ``magic`` must be TPM_GENERATED_VALUE, which a restricted AK signs only
   over structures the TPM itself made (``malformed`` otherwise), and ``type``
   TPM_ST_ATTEST_QUOTE (``unsupported`` otherwise);
3. the PCR values given must be exactly those the quote selects (TPML_PCR_SELECTION), of the
   bank's size (``malformed``), and ``pcrDigest`` must be the hash, with the signature's
   hash algorithm (TPM 2.0 Library Part 3, TPM2_Quote), of the selected values concatenated
   in selection order (``pcr-mismatch``).

Checking the signature before the content means a flipped byte anywhere in a quote that
still parses is reported as a bad signature, never as a verdict on forged bytes.

Several quotes of one TPM (one per PCR bank, as go-tpm-tools sends) are verified alike and
must carry the same extraData; together they give the values of every bank they select.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from broker.errors import (
    MalformedEvidence,
    PcrMismatch,
    SignatureInvalid,
    UnsupportedEvidence,
)
from broker.evidence.tpm.abi import (
    HASH_NAMES,
    HASH_SIZES,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    Alg,
    Attest,
    QuoteInfo,
    Signature,
    alg_name,
    parse_attest,
)

AkPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

#: The banks whose values keybroker reads and exposes as claims.
SUPPORTED_BANKS = (Alg.SHA1, Alg.SHA256, Alg.SHA384)
_SIGNATURE_HASHES: dict[int, hashes.HashAlgorithm] = {
    Alg.SHA256: hashes.SHA256(),
    Alg.SHA384: hashes.SHA384(),
    Alg.SHA512: hashes.SHA512(),
}
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

PcrValues = Mapping[int, Mapping[int, bytes]]
"""PCR values by bank (TPM_ALG_ID) and PCR index."""


@dataclass(frozen=True, slots=True)
class Quote:
    """One TPM2_Quote as received: the signed bytes, the signature and the PCR values."""

    message: bytes
    """The TPMS_ATTEST exactly as the TPM returned it (``tpm2_quote -m``)."""
    signature: Signature
    pcrs: PcrValues
    parsed: Attest | None = field(default=None, repr=False, compare=False)
    """``parse_attest(message)`` where the reader of the form already made it (the
    form needed its PCR selection), so that a quote is parsed once."""

    @property
    def attest(self) -> Attest:
        return self.parsed if self.parsed is not None else parse_attest(self.message)


@dataclass(frozen=True, slots=True)
class VerifiedQuotes:
    """Quotes whose signatures and PCR digests verified, and what they state together."""

    attest: Attest
    """The TPMS_ATTEST of the first quote that selects the SHA-256 bank (else the first)."""
    pcrs: dict[int, dict[int, bytes]]
    """The value of every selected PCR, by bank."""
    ak_fingerprint: str
    """SHA-256 of the AK's DER SubjectPublicKeyInfo."""


def spki_fingerprint(key: AkPublicKey) -> str:
    return hashlib.sha256(key.public_bytes(*_SPKI)).hexdigest()


def verify_quotes(
    quotes: Sequence[Quote], ak: AkPublicKey, ak_fingerprint: str | None = None
) -> VerifiedQuotes:
    """Verify every quote with ``ak`` (steps in the module docstring); raise otherwise.
    ``ak_fingerprint`` is :func:`spki_fingerprint` of ``ak`` where the caller has it."""
    if not quotes:
        raise MalformedEvidence("the evidence holds no TPM quote")
    pcrs: dict[int, dict[int, bytes]] = {}
    attests = []
    for index, quote in enumerate(quotes):
        where = "TPM quote" if len(quotes) == 1 else f"TPM quote {index}"
        attest, selected = verify_quote(quote, ak, where)
        for bank, values in selected.items():
            if bank in pcrs:
                raise MalformedEvidence(f"{where} selects the {alg_name(bank)} bank again")
            pcrs[bank] = values
        attests.append(attest)
    first = attests[0]
    for attest in attests[1:]:
        if not hmac.compare_digest(attest.extra_data, first.extra_data):
            raise MalformedEvidence(
                f"the TPM quotes carry different extraData ({first.extra_data.hex()} and "
                f"{attest.extra_data.hex()}); one attestation answers one challenge"
            )
    main = next((a for a in attests if Alg.SHA256 in _banks(a)), first)
    fingerprint = spki_fingerprint(ak) if ak_fingerprint is None else ak_fingerprint
    return VerifiedQuotes(main, pcrs, fingerprint)


def verify_quote(
    quote: Quote, ak: AkPublicKey, where: str = "TPM quote"
) -> tuple[Attest, dict[int, dict[int, bytes]]]:
    """Steps 1-3 for one quote: its TPMS_ATTEST and the selected PCR values, by bank."""
    attest = quote.attest  # a quote that does not parse is malformed, whoever signed it
    _check_signature(quote.message, quote.signature, ak, where)
    if attest.magic != TPM_GENERATED_VALUE:
        raise MalformedEvidence(
            f"{where}: TPMS_ATTEST.magic {attest.magic:#010x} != TPM_GENERATED_VALUE "
            f"{TPM_GENERATED_VALUE:#010x}: not a structure the TPM generated"
        )
    if attest.type != TPM_ST_ATTEST_QUOTE or not isinstance(attest.attested, QuoteInfo):
        raise UnsupportedEvidence(
            f"{where}: TPMS_ATTEST.type {attest.type:#06x} != TPM_ST_ATTEST_QUOTE "
            f"{TPM_ST_ATTEST_QUOTE:#06x}"
        )
    selected = _selected_values(attest.attested, quote.pcrs, where)
    _check_pcr_digest(attest.attested, selected, quote.signature.hash_alg, where)
    return attest, selected


def _banks(attest: Attest) -> tuple[int, ...]:
    info = attest.attested
    return tuple(s.hash_alg for s in info.pcr_select) if isinstance(info, QuoteInfo) else ()


def _check_signature(message: bytes, signature: Signature, ak: AkPublicKey, where: str) -> None:
    scheme = alg_name(signature.sig_alg)
    algorithm = _SIGNATURE_HASHES.get(signature.hash_alg)
    if algorithm is None:
        raise UnsupportedEvidence(
            f"{where}: TPMT_SIGNATURE hash {alg_name(signature.hash_alg)} is not SHA-256, "
            "SHA-384 or SHA-512"
        )
    described = f"TPMT_SIGNATURE {scheme}/{alg_name(signature.hash_alg)} over TPMS_ATTEST"
    try:
        if signature.sig_alg in (Alg.RSASSA, Alg.RSAPSS):
            if not isinstance(ak, rsa.RSAPublicKey):
                raise SignatureInvalid(f"{where}: {described}: the AK is not an RSA key")
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if signature.sig_alg == Alg.RSASSA
                # The salt is the digest's size or the largest the key allows (Part 1,
                # "RSASSA-PSS"), depending on the TPM: read it from the signature.
                else padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
            )
            ak.verify(signature.rsa, message, pad, algorithm)
        elif signature.sig_alg == Alg.ECDSA:
            if not isinstance(ak, ec.EllipticCurvePublicKey):
                raise SignatureInvalid(f"{where}: {described}: the AK is not an EC key")
            der = encode_dss_signature(
                int.from_bytes(signature.r, "big"), int.from_bytes(signature.s, "big")
            )
            ak.verify(der, message, ec.ECDSA(algorithm))
        else:  # pragma: no cover - parse_signature admits no other scheme
            raise UnsupportedEvidence(f"{where}: TPMT_SIGNATURE.sigAlg {scheme}")
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        raise SignatureInvalid(
            f"{where}: {described} does not verify with the AK (SPKI SHA-256 "
            f"{spki_fingerprint(ak)[:16]}...)"
        ) from None


def _selected_values(info: QuoteInfo, given: PcrValues, where: str) -> dict[int, dict[int, bytes]]:
    """The given values of exactly the PCRs the quote selects; ``malformed`` for any value
    missing, extra or of the wrong size, and for a bank keybroker does not read."""
    selected: dict[int, dict[int, bytes]] = {}
    for selection in info.pcr_select:
        bank, name = selection.hash_alg, alg_name(selection.hash_alg)
        if bank not in SUPPORTED_BANKS:
            raise UnsupportedEvidence(
                f"{where}: TPML_PCR_SELECTION names the {name} bank; keybroker reads sha1, "
                "sha256 and sha384"
            )
        if bank in selected:
            raise MalformedEvidence(f"{where}: TPML_PCR_SELECTION names the {name} bank twice")
        values = given.get(bank, {})
        chosen: dict[int, bytes] = {}
        for pcr in selection.pcrs:
            value = values.get(pcr)
            if value is None:
                raise MalformedEvidence(
                    f"{where}: pcrs.{name}.{pcr} is not given; the quote selects it"
                )
            if len(value) != HASH_SIZES[bank]:
                raise MalformedEvidence(
                    f"{where}: pcrs.{name}.{pcr} is {len(value)} bytes, not {HASH_SIZES[bank]}"
                )
            chosen[pcr] = value
        extra = sorted(set(values) - set(selection.pcrs))
        if extra:
            raise MalformedEvidence(
                f"{where}: pcrs.{name}.{extra[0]} is given but the quote does not select it"
            )
        selected[bank] = chosen
    unselected = sorted(alg_name(bank) for bank in set(given) - set(selected))
    if unselected:
        raise MalformedEvidence(
            f"{where}: PCR values of the {unselected[0]} bank are given but the quote selects "
            "none of it"
        )
    return selected


def _check_pcr_digest(info: QuoteInfo, selected: PcrValues, hash_alg: int, where: str) -> None:
    """pcrDigest = H(selected values in selection order), H the signing scheme's hash."""
    concatenated = b"".join(selected[s.hash_alg][pcr] for s in info.pcr_select for pcr in s.pcrs)
    found = hashlib.new(HASH_NAMES[hash_alg], concatenated).digest()
    if not hmac.compare_digest(found, info.pcr_digest):
        raise PcrMismatch(
            f"{where}: TPMS_QUOTE_INFO.pcrDigest {info.pcr_digest.hex()} != "
            f"{HASH_NAMES[hash_alg]} of the PCR values given {found.hex()}"
        )
