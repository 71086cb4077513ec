"""The claim catalogue: every claim each TEE's verifier produces, with its type and meaning.

Nothing here is written twice: the catalogue is gathered from the definitions that sit next
to the code producing the claims (``COMMON_CLAIMS`` of :mod:`broker.evidence.claims`, and the
``CLAIMS`` of each TEE's ``claims`` module and of :mod:`broker.evidence.dcap.claims`), and a
test holds them to what the verifiers produce from every real vector. The policy linter reads
it (``unknown-claim``); docs/claims.md is generated from it (:mod:`broker.policy.claims_doc`),
and a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from broker.evidence.claims import COMMON_CLAIMS, INDEX, ClaimDefinition, ClaimKind, Tee
from broker.evidence.dcap import claims as dcap
from broker.evidence.nitro import claims as nitro
from broker.evidence.sgx import claims as sgx
from broker.evidence.snp import claims as snp
from broker.evidence.tdx import claims as tdx
from broker.evidence.tpm import claims as tpm
from broker.evidence.vtpm import claims as vtpm

#: Kinds whose entries are addressed by index (``rtmr.0``, ``pcrs.8``).
_INDEXED = frozenset({ClaimKind.LIST, ClaimKind.MAP})


@dataclass(frozen=True, slots=True)
class ClaimSource:
    """The definitions of one module, and the TEEs whose claims include them."""

    title: str
    module: str
    tees: tuple[Tee, ...]
    definitions: tuple[ClaimDefinition, ...]


#: Every module that defines claims, in the order docs/claims.md lists them.
SOURCES: tuple[ClaimSource, ...] = (
    ClaimSource("Every TEE", "broker/evidence/claims.py", tuple(Tee), COMMON_CLAIMS),
    ClaimSource(
        "AMD SEV-SNP", "broker/evidence/snp/claims.py", (Tee.SNP, Tee.SNP_VTPM), snp.CLAIMS
    ),
    ClaimSource(
        "Intel TDX: the TD report body",
        "broker/evidence/tdx/claims.py",
        (Tee.TDX, Tee.TDX_VTPM),
        tdx.BODY_CLAIMS,
    ),
    ClaimSource(
        "Intel TDX: the CCEL event log",
        "broker/evidence/tdx/claims.py",
        (Tee.TDX,),
        tdx.EVENT_LOG_CLAIMS,
    ),
    ClaimSource("Intel SGX", "broker/evidence/sgx/claims.py", (Tee.SGX,), sgx.CLAIMS),
    ClaimSource(
        "Intel TDX and SGX: the quote and the platform",
        "broker/evidence/dcap/claims.py",
        (Tee.TDX, Tee.SGX, Tee.TDX_VTPM),
        dcap.CLAIMS,
    ),
    ClaimSource(
        "AWS Nitro Enclaves", "broker/evidence/nitro/claims.py", (Tee.NITRO,), nitro.CLAIMS
    ),
    ClaimSource(
        "TPM: the quote, its PCRs and the measured-boot log",
        "broker/evidence/tpm/claims.py",
        (Tee.TPM, Tee.SNP_VTPM, Tee.TDX_VTPM),
        tpm.CLAIMS,
    ),
    ClaimSource(
        "Paravisor vTPM: the AK certificate and the runtime data",
        "broker/evidence/vtpm/claims.py",
        (Tee.SNP_VTPM, Tee.TDX_VTPM),
        vtpm.CLAIMS,
    ),
)


class Catalogue:
    """The claims of one TEE, found by the dotted path a policy condition names."""

    def __init__(self, tee: Tee, definitions: Sequence[ClaimDefinition]) -> None:
        self.tee = tee
        self.definitions = tuple(definitions)
        self._by_name: dict[str, ClaimDefinition] = {}
        for definition in self.definitions:
            self._check(definition)
            self._by_name[definition.name] = definition

    def _check(self, definition: ClaimDefinition) -> None:
        """Refuse a definition that repeats a name or whose parent is not defined before it
        as an object (or, for an :data:`INDEX` part, as a list or map)."""
        name = definition.name
        if name in self._by_name:
            raise ValueError(f"{self.tee} claim {name!r} is defined twice")
        parent_name, _, last = name.rpartition(".")
        if not parent_name:
            return
        parent = self._by_name.get(parent_name)
        wanted = _INDEXED if last == INDEX else frozenset({ClaimKind.OBJECT})
        if parent is None or parent.kind not in wanted:
            kinds = " or ".join(sorted(wanted))
            raise ValueError(f"{self.tee} claim {name!r} needs {parent_name!r} defined as {kinds}")

    def __iter__(self) -> Iterator[ClaimDefinition]:
        return iter(self.definitions)

    def find(self, path: str) -> ClaimDefinition | None:
        """The definition of the claim at ``path`` (``reported_tcb.snp``, ``rtmr.3``,
        ``pcrs.8``), or None when no verifier of this TEE produces it."""
        name = ""
        definition: ClaimDefinition | None = None
        for part in path.split("."):
            key = part
            if definition is not None and definition.kind in _INDEXED:
                if not _is_index(part, definition):
                    return None
                key = INDEX  # every entry has the one definition NAME.N
            name = f"{name}.{key}" if name else key
            definition = self._by_name.get(name)
            if definition is None:
                return None
        return definition

    def members(self, parent: ClaimDefinition) -> tuple[ClaimDefinition, ...]:
        """The definitions directly below ``parent``."""
        prefix = f"{parent.name}."
        return tuple(
            d
            for d in self.definitions
            if d.name.startswith(prefix) and "." not in d.name[len(prefix) :]
        )


def _is_index(part: str, container: ClaimDefinition) -> bool:
    """Whether ``part`` addresses an entry of ``container`` as the evaluator reads it: any
    decimal number below its size for a list, the decimal key itself for a map."""
    if not (part.isascii() and part.isdigit()):
        return False
    index = int(part)
    if container.kind is ClaimKind.MAP and part != str(index):
        return False
    return container.size is None or index < container.size


def _catalogue(tee: Tee) -> Catalogue:
    return Catalogue(
        tee,
        [
            definition
            for source in SOURCES
            if tee in source.tees
            for definition in source.definitions
        ],
    )


#: The catalogue of each TEE.
CATALOGUE: Mapping[Tee, Catalogue] = {tee: _catalogue(tee) for tee in Tee}
