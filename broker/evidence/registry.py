"""Which TEEs keybroker verifies, and the one interface each verifier offers.

Each TEE package (``broker.evidence.snp``, ``.tdx``, ``.sgx``, ``.nitro``, ``.tpm``; the
paravisor vTPMs' ``.vtpm.snp`` and ``.vtpm.tdx``) exposes a module attribute ``VERIFIER`` of
type :class:`TeeVerifier`. Packages are imported on first use, so a
TEE whose package is absent is simply ``unsupported``.

Collateral travels as a mapping of documented names to bytes (``vcek``, ``crl``,
``tcb_info``...), whether it comes from CLI files, the ``collateral`` member of an attest
request, or the broker's collateral store; each verifier lists the names it reads.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from broker.errors import UnsupportedEvidence
from broker.evidence.claims import TEE_ALIASES, Claims, Tee
from broker.evidence.trust import TrustedRoot

Collateral = Mapping[str, bytes]


class VerifyFunction(Protocol):
    def __call__(
        self,
        evidence: bytes,
        collateral: Collateral,
        *,
        now: datetime,
        extra_roots: Sequence[TrustedRoot] = (),
    ) -> Claims:
        """Verify ``evidence`` at ``now`` and return its claims; raise an ``EvidenceError``.

        ``extra_roots`` are test roots admitted through an ``insecure_`` setting; they are
        trusted in addition to the pinned vendor roots, never instead of them.
        """
        ...


@dataclass(frozen=True, slots=True)
class CollateralOption:
    """One piece of collateral a verifier reads, and how the CLI accepts it."""

    name: str
    flag: str
    help: str
    is_file: bool = True
    filenames: tuple[str, ...] = ()
    """Conventional file names of this collateral in a directory (``--collateral DIR``);
    the first that exists is read."""


@dataclass(frozen=True, slots=True)
class TeeVerifier:
    tee: Tee
    verify: VerifyFunction
    collateral_options: tuple[CollateralOption, ...] = ()

    @property
    def collateral_names(self) -> frozenset[str]:
        return frozenset(option.name for option in self.collateral_options)


_PACKAGES: dict[Tee, str] = {
    Tee.SNP: "broker.evidence.snp",
    Tee.TDX: "broker.evidence.tdx",
    Tee.SGX: "broker.evidence.sgx",
    Tee.NITRO: "broker.evidence.nitro",
    Tee.SNP_VTPM: "broker.evidence.vtpm.snp",
    Tee.TDX_VTPM: "broker.evidence.vtpm.tdx",
    Tee.TPM: "broker.evidence.tpm",
}


def parse_tee(name: str) -> Tee:
    """The tee ``name`` stands for: its own name, or an alias (``az-snp-vtpm``)."""
    alias = TEE_ALIASES.get(name)
    if alias is not None:
        return alias
    try:
        return Tee(name)
    except ValueError:
        known = ", ".join([*(t.value for t in Tee), *TEE_ALIASES])
        raise UnsupportedEvidence(f"tee '{name}' is not one of {known}") from None


def verifier_for(tee: Tee | str) -> TeeVerifier:
    """The verifier of ``tee``; ``UnsupportedEvidence`` when keybroker has none."""
    tee = parse_tee(tee) if isinstance(tee, str) else tee
    module_name = _PACKAGES[tee]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UnsupportedEvidence(f"tee '{tee.value}' is not supported yet") from None
        raise
    verifier = getattr(module, "VERIFIER", None)
    if not isinstance(verifier, TeeVerifier):
        raise UnsupportedEvidence(f"tee '{tee.value}' is not supported yet")
    return verifier


def supported_tees() -> list[Tee]:
    supported = []
    for tee in Tee:
        try:
            verifier_for(tee)
        except UnsupportedEvidence:
            continue
        supported.append(tee)
    return supported
