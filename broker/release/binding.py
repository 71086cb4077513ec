"""What the evidence must bind: the challenge nonce and the tee public key.

For SNP, TDX and SGX the guest puts ``H(JCS({"nonce": <nonce>, "tee-pubkey": <JWK>}))`` into
the 64-byte REPORT_DATA, zero-padded, with H = SHA-384 (48 bytes + 16 zeros) or SHA-512 (all
64 bytes). This is the runtime-data binding of Trustee's KBS protocol, so one guest tool
serves both. ``nonce`` is the string the broker handed out (standard base64 of 32 bytes) and
the JWK is hashed as the guest sent it, canonicalised (RFC 8785).

For Nitro the document carries the two separately: its ``nonce`` field must equal the 32
nonce bytes and its ``public_key`` field the DER SubjectPublicKeyInfo of the tee key.

Trustee's KBS protocol (RCAR 0.4.0, :class:`RcarBinding`) binds one member more, as the
reference client computes it: REPORT_DATA starts with ``H(JCS({"additional-evidence": <the
string>, "nonce": <nonce>, "tee-pubkey": <JWK>}))``, zero-padded to 64 bytes, with H the hash
the challenge selected (sha256, sha384 or sha512), and, when the attestation carries
``init-data``, the TEE's launch-configuration field starts with the init-data digest, padded
or cut to its size as Trustee does: SNP HOST_DATA (32 bytes), TDX MRCONFIGID (48), SGX
CONFIGID (64).

Behind a vTPM (``snp-vtpm``, ``tdx-vtpm``, ``tpm``) the hardware report's REPORT_DATA is the
paravisor's, so the guest binds through the TPM quote instead: its extraData (the qualifying
data of TPM2_Quote) is the same digest, unpadded (48 bytes of SHA-384 or 64 of SHA-512, as
Trustee's clients send it), or the 64-byte REPORT_DATA form.

Through the KBS protocol a paravisor vTPM (``az-snp-vtpm``, ``az-tdx-vtpm``) binds as
Trustee's attesters make it and its verifiers check it (guest-components
``attester/src/az_{snp,tdx}_vtpm``, trustee ``deps/verifier/src/az_snp_vtpm``): the RCAR
digest above, unpadded, is the quote's extraData byte for byte; v2 evidence also writes it,
zero-padded to 64 bytes, into the runtime data's ``user-data``, which the verifier holds to
the extraData (docs/vtpm.md), so one comparison binds both. Init-data is measured into the
vTPM, not into a report field: the attester extends sha256 PCR8 once with its SHA-256
digest, so PCR8 must be ``SHA-256(32 zero bytes || digest)``.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.errors import BadRequest, BindingMismatch
from broker.evidence.claims import Claims, Tee
from broker.evidence.nitro.binding import check_binding as check_nitro_binding
from broker.jcs import canonicalize
from hsm.pubkey import RsaPublicKey

REPORT_DATA_BYTES = 64
#: The tees whose binding is the TPM quote's extraData.
EXTRA_DATA_TEES = frozenset({Tee.SNP_VTPM, Tee.TDX_VTPM, Tee.TPM})
_DIGESTS = {"sha384": hashlib.sha384, "sha512": hashlib.sha512}


def runtime_data(nonce_text: str, jwk: Mapping[str, Any]) -> bytes:
    return canonicalize({"nonce": nonce_text, "tee-pubkey": dict(jwk)})


def binding_digest(nonce_text: str, jwk: Mapping[str, Any], algorithm: str) -> bytes:
    """H(JCS({nonce, tee-pubkey})): 48 bytes (sha384) or 64 (sha512), unpadded."""
    return _digest(runtime_data(nonce_text, jwk), algorithm)


def expected_report_data(nonce_text: str, jwk: Mapping[str, Any], algorithm: str) -> bytes:
    return _report_data(runtime_data(nonce_text, jwk), algorithm)


def _digest(document: bytes, algorithm: str) -> bytes:
    digest = _DIGESTS.get(algorithm)
    if digest is None:
        raise ValueError(f"binding hash {algorithm} not sha384/sha512")
    return digest(document).digest()


def _report_data(document: bytes, algorithm: str) -> bytes:
    return _digest(document, algorithm).ljust(REPORT_DATA_BYTES, b"\0")


def check_report_data(report_data: bytes | None, nonce_text: str, jwk: Mapping[str, Any]) -> str:
    """Return the hash that matched; ``BindingMismatch`` when neither does."""
    if report_data is None or len(report_data) != REPORT_DATA_BYTES:
        raise BindingMismatch("evidence carries no 64-byte REPORT_DATA")
    document = runtime_data(nonce_text, jwk)  # once, for either hash
    for algorithm in ("sha384", "sha512"):
        if hmac.compare_digest(report_data, _report_data(document, algorithm)):
            return algorithm
    raise BindingMismatch(
        "REPORT_DATA is neither SHA-384 nor SHA-512 of JCS({nonce, tee-pubkey}) for this "
        f"challenge and key (found {report_data[:8].hex()}...)"
    )


def check_extra_data(claims: Claims, nonce_text: str, jwk: Mapping[str, Any]) -> str:
    """The TPM quote's extraData is the binding digest (see the module docstring); return
    ``extra-data-sha384`` or ``extra-data-sha512``, else ``BindingMismatch``."""
    tpm = claims.fields.get("tpm")
    text = tpm.get("extra_data") if isinstance(tpm, Mapping) else None
    if not isinstance(text, str):
        raise BindingMismatch("evidence carries no TPM quote extraData")
    extra = bytes.fromhex(text)
    document = runtime_data(nonce_text, jwk)
    for algorithm in _DIGESTS:
        digest = _digest(document, algorithm)
        if hmac.compare_digest(extra, digest) or hmac.compare_digest(
            extra, digest.ljust(REPORT_DATA_BYTES, b"\0")
        ):
            return f"extra-data-{algorithm}"
    raise BindingMismatch(
        "TPM quote extraData is neither SHA-384 nor SHA-512 of JCS({nonce, tee-pubkey}) for "
        f"this challenge and key (found {len(extra)} bytes {extra[:8].hex()}...)"
    )


def check_binding(
    claims: Claims, nonce: bytes, nonce_text: str, jwk: Mapping[str, Any], tee_key: RsaPublicKey
) -> str:
    if claims.tee in EXTRA_DATA_TEES:
        return check_extra_data(claims, nonce_text, jwk)
    if claims.tee is Tee.NITRO:
        check_nitro_binding(claims, nonce, tee_key.spki_der())
        return "nitro-fields"
    return check_report_data(claims.report_data, nonce_text, jwk)


# --- Trustee's KBS protocol ----------------------------------------------------------------

#: The binding hashes a KBS challenge may select (kbs-types ``HashAlgorithm``; sm3 is not
#: offered by keybroker), in the order keybroker prefers them: sha384 is the reference
#: client's default and what Trustee's own attestation service uses.
RCAR_HASHES = {"sha384": hashlib.sha384, "sha512": hashlib.sha512, "sha256": hashlib.sha256}
#: Where each TEE carries the init-data digest, and the field's size (Trustee pads or cuts
#: the digest to it).
INIT_DATA_FIELDS = {
    Tee.SNP: ("host_data", 32),
    Tee.TDX: ("mr_config_id", 48),
    Tee.SGX: ("config_id", 64),
}
#: Digests an init-data document may name (its ``algorithm``).
INIT_DATA_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


@dataclass(frozen=True, slots=True)
class InitData:
    """The digest of a KBS attestation's ``init-data`` (a TOML document whose ``algorithm``
    names the hash of the document's own text, as Trustee computes it)."""

    algorithm: str
    digest: bytes

    @classmethod
    def of(cls, format_: str, body: str) -> InitData:
        """``BadRequest`` unless ``format_`` is ``toml`` and ``body`` a TOML document whose
        ``algorithm`` is sha256, sha384 or sha512."""
        if format_ != "toml":
            raise BadRequest(f"init-data format {format_[:32]!r} is not toml")
        try:
            document = tomllib.loads(body)
        except tomllib.TOMLDecodeError as exc:
            raise BadRequest(f"init-data body is not TOML: {exc}") from None
        algorithm = document.get("algorithm")
        hasher = INIT_DATA_HASHES.get(algorithm) if isinstance(algorithm, str) else None
        if hasher is None:
            raise BadRequest("init-data algorithm must be sha256, sha384 or sha512")
        return cls(str(algorithm), hasher(body.encode("utf-8")).digest())


@dataclass(frozen=True, slots=True)
class RcarBinding:
    """What a KBS attestation binds besides the nonce and the tee key."""

    hash_name: str
    """The hash the session's challenge selected: a key of :data:`RCAR_HASHES`."""
    additional_evidence: str
    """``tee-evidence.additional_evidence`` as sent (bound, not verified: docs/kbs.md)."""
    init_data: InitData | None = None

    def check(self, claims: Claims, nonce_text: str, jwk: Mapping[str, Any]) -> dict[str, Any]:
        """Raise ``BindingMismatch`` unless ``claims`` bind this attestation; what the audit
        record says of the binding."""
        document = canonicalize(
            {
                "additional-evidence": self.additional_evidence,
                "nonce": nonce_text,
                "tee-pubkey": dict(jwk),
            }
        )
        digest = RCAR_HASHES[self.hash_name](document).digest()
        summary: dict[str, Any] = {"rule": "kbs-rcar", "hash": self.hash_name}
        if claims.tee in EXTRA_DATA_TEES:
            self._check_extra_data(claims, digest)
            summary["field"] = "tpm.extra_data"
        else:
            expected = digest + bytes(REPORT_DATA_BYTES - len(digest))
            found = claims.report_data
            if found is None or not hmac.compare_digest(found, expected):
                shown = "none" if found is None else f"{found[:8].hex()}..."
                raise BindingMismatch(
                    f"REPORT_DATA is not {self.hash_name} of JCS({{additional-evidence, nonce, "
                    f"tee-pubkey}}) for this session, zero-padded (found {shown})"
                )
        if self.additional_evidence:
            summary["additional_evidence_sha256"] = hashlib.sha256(
                self.additional_evidence.encode("utf-8")
            ).hexdigest()
        if self.init_data is not None:
            summary["init_data"] = self._check_init_data(claims, self.init_data)
        return summary

    def _check_extra_data(self, claims: Claims, digest: bytes) -> None:
        """The quote's extraData is ``digest`` exactly, as Trustee's verifier compares it
        (no padding: the attester quotes the digest as it is)."""
        found = _hex_claim(claims, "tpm.extra_data")
        if found is None or not hmac.compare_digest(found, digest):
            shown = "none" if found is None else f"{len(found)} bytes {found[:8].hex()}..."
            raise BindingMismatch(
                f"TPM quote extraData is not {self.hash_name} of JCS({{additional-evidence, "
                f"nonce, tee-pubkey}}) for this session (found {shown})"
            )

    @staticmethod
    def _check_init_data(claims: Claims, init_data: InitData) -> dict[str, str]:
        if claims.tee in EXTRA_DATA_TEES:
            return _check_init_data_pcr(claims, init_data)
        field = INIT_DATA_FIELDS.get(claims.tee)
        if field is None:
            raise BindingMismatch(f"tee {claims.tee.value} carries no init-data digest")
        name, size = field
        wanted = (init_data.digest + bytes(size))[:size]
        found = bytes.fromhex(str(claims.lookup(name)))
        if not hmac.compare_digest(found, wanted):
            raise BindingMismatch(
                f"{name.upper()} {found[:8].hex()}... is not the init-data {init_data.algorithm} "
                f"digest {wanted[:8].hex()}... (padded or cut to {size} bytes)"
            )
        return {"algorithm": init_data.algorithm, "digest": init_data.digest.hex(), "field": name}


#: The PCR a vTPM guest's attester extends with the init-data digest (Trustee's
#: ``INITDATA_PCR``), and the bank.
INIT_DATA_PCR = 8


def _check_init_data_pcr(claims: Claims, init_data: InitData) -> dict[str, str]:
    """sha256 PCR8 is the init-data digest extended once into its reset value: SHA-256(32
    zero bytes || digest). The attester extends the sha256 bank, so the digest must be a
    SHA-256 one."""
    if init_data.algorithm != "sha256":
        raise BindingMismatch(
            f"init-data algorithm {init_data.algorithm}: a vTPM guest extends PCR"
            f"{INIT_DATA_PCR} with a sha256 digest, so its init-data must name sha256"
        )
    wanted = hashlib.sha256(bytes(32) + init_data.digest).digest()
    found = _hex_claim(claims, f"tpm.pcrs.sha256.{INIT_DATA_PCR}")
    if found is None or not hmac.compare_digest(found, wanted):
        shown = "not quoted" if found is None else f"{found[:8].hex()}..."
        raise BindingMismatch(
            f"sha256 PCR{INIT_DATA_PCR} {shown} is not the init-data digest extended once "
            f"into its reset value ({wanted[:8].hex()}...)"
        )
    return {
        "algorithm": init_data.algorithm,
        "digest": init_data.digest.hex(),
        "field": f"tpm.pcrs.sha256.{INIT_DATA_PCR}",
    }


def _hex_claim(claims: Claims, path: str) -> bytes | None:
    """The bytes of a hex claim (the verifiers write them), None where there is none."""
    try:
        text = claims.lookup(path)
    except KeyError:
        return None
    return bytes.fromhex(text) if isinstance(text, str) else None
