"""Normalised claims: what every TEE verifier returns and every policy reads.

A verifier turns vendor-specific evidence into one immutable :class:`Claims` object. Its
``fields`` are a JSON-compatible tree whose names are the snake_case spec field names of the
TEE (``measurement``, ``reported_tcb.snp``, ``td_attributes.debug``...): bytes appear as
lowercase hex, TCB parts and SVNs as integers, lists as tuples. The few facts the release flow
itself needs (who signed, whether the guest is debuggable, what the evidence binds) are typed
attributes next to the fields, so that no caller has to know a TEE's field names.

Every claim a verifier produces has one :class:`ClaimDefinition` (name, type, one-line
description) in the module that produces it: the common claims below, the TEE's own in its
``claims`` module. ``broker.policy.catalogue`` gathers them into the claim catalogue, which
the policy linter reads and docs/claims.md is generated from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from broker.timeutil import iso

#: A claim value: JSON scalars, tuples and read-only mappings of them.
ClaimValue = Any


class Tee(StrEnum):
    SNP = "snp"
    TDX = "tdx"
    SGX = "sgx"
    NITRO = "nitro"
    SNP_VTPM = "snp-vtpm"
    """An SEV-SNP guest behind a paravisor's vTPM (Azure confidential VMs)."""
    TDX_VTPM = "tdx-vtpm"
    """A TDX guest behind a paravisor's vTPM (Azure confidential VMs)."""
    TPM = "tpm"
    """A (v)TPM whose AK certificate chains to a cloud's root (GCE shielded VMs)."""


#: Other names the API and the CLI accept for a tee (Trustee's clients say ``az-snp-vtpm``).
TEE_ALIASES: dict[str, Tee] = {"az-snp-vtpm": Tee.SNP_VTPM, "az-tdx-vtpm": Tee.TDX_VTPM}


class ClaimKind(StrEnum):
    """How a claim's value appears in the claims document (JSON)."""

    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    HEX = "hex"
    """Bytes, as lowercase hex."""
    OBJECT = "object"
    """Named members, each a claim of its own (``reported_tcb.snp``)."""
    LIST = "list"
    """Entries addressed by their index (``rtmr.0``), each the claim ``<name>.N``."""
    MAP = "map"
    """Entries keyed by a decimal index (Nitro ``pcrs``: ``"0"``, ``"8"``), addressed like
    a list's and present only where the evidence has them; each is the claim ``<name>.N``."""


#: Kinds a comparison can read; objects and lists only ``exists`` tests.
SCALAR_KINDS = frozenset({ClaimKind.STRING, ClaimKind.INTEGER, ClaimKind.BOOLEAN, ClaimKind.HEX})
#: The part of a claim name that stands for any index of the list or map above it.
INDEX = "N"


@dataclass(frozen=True, slots=True)
class ClaimDefinition:
    """One claim a verifier produces: where it is, its type and what it means."""

    name: str
    """Dotted path from the top of the claims document (``reported_tcb.snp``); :data:`INDEX`
    stands for an entry of a list or map (``rtmr.N``, ``event_log.N.digest``)."""
    kind: ClaimKind
    description: str
    """One line, for docs/claims.md."""
    size: int | None = None
    """``HEX``: the length in bytes, when fixed. ``LIST``, ``MAP``: the number of indexes
    (``0`` to ``size - 1``), when bounded."""
    nullable: bool = False
    """Null where this evidence does not carry it (``cpuid`` before report v3)."""
    read_by_member: bool = False
    """An object that conditions read only member by member (``signer``): the object
    itself reads as absent."""

    @property
    def type(self) -> str:
        """The type as docs/claims.md prints it: ``hex, 48 bytes``, ``list of 4``,
        ``integer or null``."""
        text = self.kind.value
        if self.size is not None:
            if self.kind is ClaimKind.HEX:
                text = f"hex, {self.size} bytes"
            else:
                text = f"{self.kind.value} of {self.size}"
        return f"{text} or null" if self.nullable else text


def within(parent: ClaimDefinition, *members: ClaimDefinition) -> tuple[ClaimDefinition, ...]:
    """``parent`` and its ``members``, whose names are given relative to it."""
    return (parent, *(replace(member, name=f"{parent.name}.{member.name}") for member in members))


def string_claim(name: str, description: str, *, nullable: bool = False) -> ClaimDefinition:
    return ClaimDefinition(name, ClaimKind.STRING, description, nullable=nullable)


def integer_claim(name: str, description: str, *, nullable: bool = False) -> ClaimDefinition:
    return ClaimDefinition(name, ClaimKind.INTEGER, description, nullable=nullable)


def boolean_claim(name: str, description: str) -> ClaimDefinition:
    return ClaimDefinition(name, ClaimKind.BOOLEAN, description)


def hex_claim(
    name: str, size: int | None, description: str, *, nullable: bool = False
) -> ClaimDefinition:
    return ClaimDefinition(name, ClaimKind.HEX, description, size, nullable)


def object_claim(
    name: str, description: str, *, nullable: bool = False, read_by_member: bool = False
) -> ClaimDefinition:
    return ClaimDefinition(
        name, ClaimKind.OBJECT, description, nullable=nullable, read_by_member=read_by_member
    )


def list_claim(
    name: str, size: int | None, description: str, *, nullable: bool = False
) -> ClaimDefinition:
    return ClaimDefinition(name, ClaimKind.LIST, description, size, nullable)


def map_claim(name: str, size: int, description: str) -> ClaimDefinition:
    return ClaimDefinition(name, ClaimKind.MAP, description, size)


class SignerOrigin(StrEnum):
    """Who vouches for the evidence (ARCHITECTURE §2).

    ``silicon-vendor`` evidence is rooted in the CPU maker (AMD, Intel, NVIDIA) and does not
    require trusting the cloud operator; ``infrastructure-provider`` evidence (AWS Nitro, cloud
    vTPMs) is rooted in the operator itself, which then stays fully trusted.
    """

    SILICON_VENDOR = "silicon-vendor"
    INFRASTRUCTURE_PROVIDER = "infrastructure-provider"


@dataclass(frozen=True, slots=True)
class Signer:
    vendor: str
    """``amd``, ``intel``, ``aws``; for a plain vTPM, its AK root's: ``google``, ``microsoft``."""
    origin: SignerOrigin
    root: str
    """Name of the pinned root the chain ended in (``amd-ark-milan``, ``intel-sgx-root-ca``);
    roots admitted through an ``insecure_`` setting are named ``insecure-test-...``."""
    key: str
    """The endorsement key kind that signed: ``vcek``, ``vlek``, ``pck``, ``nitro``; ``ak``
    for a plain vTPM's attestation key."""
    product: str | None = None
    """Silicon product where the vendor distinguishes it (``Milan``, ``Genoa``, ``Turin``)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "origin": self.origin.value,
            "root": self.root,
            "key": self.key,
            "product": self.product,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Signer:
        return cls(
            vendor=str(doc["vendor"]),
            origin=SignerOrigin(doc["origin"]),
            root=str(doc["root"]),
            key=str(doc["key"]),
            product=None if doc.get("product") is None else str(doc["product"]),
        )


#: The claims every verifier produces: the typed attributes of :class:`Claims` that policies
#: read (``Claims.document()`` puts them next to the TEE's fields).
COMMON_CLAIMS: tuple[ClaimDefinition, ...] = (
    string_claim(
        "tee",
        "the TEE that produced the evidence: snp, tdx, sgx, nitro, snp-vtpm, tdx-vtpm or tpm",
    ),
    boolean_claim(
        "debug",
        "the host can inspect the guest or enclave (SNP policy.debug, TDX "
        "td_attributes.debug, SGX attributes.debug, Nitro debug mode)",
    ),
    *within(
        object_claim(
            "signer",
            "who vouches for the evidence; conditions read its members one by one",
            read_by_member=True,
        ),
        string_claim(
            "vendor", "amd, intel or aws; google or microsoft for a plain vTPM (test: test)"
        ),
        string_claim(
            "origin",
            "silicon-vendor (rooted in the CPU maker) or infrastructure-provider (rooted in "
            "the cloud operator, who then stays trusted; every vTPM tee, whose PCRs and "
            "nonce the provider's paravisor or vTPM vouches for)",
        ),
        string_claim(
            "root",
            "the pinned root the chain ended in (amd-ark-milan, intel-sgx-root-ca, "
            "aws-nitro-enclaves-root-g1, google-tpm-ek-root-2018; insecure-test-... for test "
            "roots); for snp-vtpm and tdx-vtpm the hardware report's",
        ),
        string_claim(
            "key",
            "the endorsement key that signed: vcek, vlek, pck, nitro, or ak (a plain vTPM's "
            "attestation key)",
        ),
        string_claim(
            "product",
            "the silicon product, where the vendor tells them apart (Milan, Genoa, Turin)",
            nullable=True,
        ),
    ),
)


# Exact types first: claim trees are walked on every attestation and release, and an
# ``isinstance`` against an ABC costs several times a type lookup.
_SCALARS = frozenset({str, int, bool, float, type(None)})


def freeze(value: Any) -> ClaimValue:
    """Return a deep read-only copy of a JSON-like value (dict -> mapping, list -> tuple)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return MappingProxyType(
            {str(k): v if type(v) in _SCALARS else freeze(v) for k, v in value.items()}
        )
    if kind is list or kind is tuple:
        return tuple(v if type(v) in _SCALARS else freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"not a claim value: {type(value).__name__}")


def thaw(value: ClaimValue) -> Any:
    """Inverse of :func:`freeze`: plain dicts and lists, ready for ``json.dumps``."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is MappingProxyType or kind is dict:
        if _SCALARS.issuperset(map(type, value.values())):
            # Most claim mappings hold only scalars (a TCB, a policy): a C-level copy of the
            # mapping behind the proxy (a dict, as freeze and the verifiers make them).
            copied = value.copy()
            if type(copied) is dict:
                return copied
        return {k: v if type(v) in _SCALARS else thaw(v) for k, v in value.items()}
    if kind is tuple:
        return [v if type(v) in _SCALARS else thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


_MISSING = object()


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified, normalised content of one piece of evidence."""

    tee: Tee
    signer: Signer
    debug: bool
    """True when the guest or enclave can be inspected by its host (SNP policy DEBUG, TDX
    TD_ATTRIBUTES.DEBUG, SGX ATTRIBUTES.DEBUG, Nitro debug mode)."""
    fields: Mapping[str, ClaimValue]
    report_data: bytes | None = None
    """The 64 bytes the guest chose (SNP REPORT_DATA, TDX/SGX REPORTDATA); None for Nitro,
    whose binding is its ``nonce`` and ``public_key`` fields."""
    evidence_time: datetime | None = None
    """When the evidence says it was produced, where it says so (Nitro ``timestamp``)."""
    collateral_time: datetime | None = None
    """Issue time of the oldest collateral used (Intel TCB Info / QE Identity), if any."""
    warnings: tuple[str, ...] = field(default=())
    """Facts worth showing that did not fail verification (e.g. trailing zero padding)."""
    _plain_fields: dict[str, Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """Memo of ``thaw(fields)``: an attestation writes the fields into its record, its
    answer and its token, and the fields never change."""

    def __post_init__(self) -> None:
        if not isinstance(self.fields, MappingProxyType):
            object.__setattr__(self, "fields", freeze(self.fields))

    def plain_fields(self) -> dict[str, Any]:
        """``thaw(fields)``, made once per claims object and shared by every caller (and by
        :meth:`document` and :meth:`to_json`): JSON output only, never to be modified."""
        plain = self._plain_fields
        if plain is None:
            plain = thaw(self.fields)
            object.__setattr__(self, "_plain_fields", plain)
        return plain

    def document(self) -> dict[str, Any]:
        """The claims as policies see them: ``tee``, ``signer``, ``debug`` and every field.

        A new dict each time, whose nested values are shared with :meth:`plain_fields`:
        serialise it, do not modify below the top level."""
        return {
            "tee": self.tee.value,
            "signer": self.signer.to_json(),
            "debug": self.debug,
            **self.plain_fields(),
        }

    def lookup(self, path: str) -> ClaimValue:
        """Value at a dotted path (``reported_tcb.snp``, ``signer.origin``, ``rtmr.0``).

        Raises ``KeyError`` when the path does not exist.
        """
        head, _, rest = path.partition(".")
        node: Any
        if head == "tee":
            node = self.tee.value
        elif head == "signer":
            node = self.signer.to_json()
        elif head == "debug":
            node = self.debug
        else:
            node = self.fields.get(head, _MISSING)
        if node is _MISSING:
            raise KeyError(path)
        while rest:
            part, _, rest = rest.partition(".")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, tuple) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(path)
        return node

    def to_json(self) -> dict[str, Any]:
        """A lossless JSON form (for the attestation-result token); ``fields`` is
        :meth:`plain_fields`, shared: serialise it, do not modify it."""
        return {
            "tee": self.tee.value,
            "signer": self.signer.to_json(),
            "debug": self.debug,
            "fields": self.plain_fields(),
            "report_data": None if self.report_data is None else self.report_data.hex(),
            "evidence_time": iso(self.evidence_time),
            "collateral_time": iso(self.collateral_time),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Claims:
        report_data = doc.get("report_data")
        return cls(
            tee=Tee(doc["tee"]),
            signer=Signer.from_json(doc["signer"]),
            debug=bool(doc["debug"]),
            fields=freeze(doc["fields"]),
            report_data=None if report_data is None else bytes.fromhex(report_data),
            evidence_time=_parse_iso(doc.get("evidence_time")),
            collateral_time=_parse_iso(doc.get("collateral_time")),
            warnings=tuple(doc.get("warnings", ())),
        )


def _parse_iso(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def event_log_claims(
    *, log: str, event: str, register: str, extended: str, digest_size: int, digest_name: str
) -> tuple[ClaimDefinition, ...]:
    """The ``event_log`` list of a replayed measured-boot log (TCG PC Client events), shared
    by the CCEL replay into RTMRs and the TPM log replay into PCRs: ``log`` and ``event``
    describe the list and an item, ``register`` names the member saying what each event
    extended (``rtmr``, ``pcr``) and ``extended`` describes it; the log's digests are
    ``digest_size`` bytes of the hash its tee's documents call ``digest_name``."""
    return within(
        list_claim("event_log", None, log, nullable=True),
        object_claim(INDEX, event),
        integer_claim(f"{INDEX}.{register}", extended),
        string_claim(f"{INDEX}.type", "its event type (EV_EFI_...; unknown types in hex)"),
        hex_claim(
            f"{INDEX}.digest",
            digest_size,
            f"the {digest_name} digest extended into the {register.upper()}",
        ),
        string_claim(
            f"{INDEX}.description",
            "what the event data names, where it is printable (unauthenticated)",
            nullable=True,
        ),
        boolean_claim(
            f"{INDEX}.data_matches_digest",
            f"SHA-{digest_size * 8} of the event data is the digest",
        ),
    )
