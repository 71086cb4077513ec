"""AMD EPYC products that run SEV-SNP, and how a report or a VCEK names them.

The product decides three things: which pinned ARK ends the chain, the byte layout of every
TCB_VERSION (Turin differs), and the size of the VCEK hwID (8 bytes on Turin, 64 before).
"""

from __future__ import annotations

from enum import StrEnum

from broker.errors import UnsupportedEvidence
from broker.evidence.snp.abi import Cpuid


class Product(StrEnum):
    """The product line as AMD KDS spells it in its URLs (``/vcek/v1/{product}/...``)."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @property
    def is_turin(self) -> bool:
        return self is Product.TURIN

    @property
    def hwid_size(self) -> int:
        """Bytes of CHIP_ID that identify the chip to KDS and in the VCEK hwID: 64, but only
        the first 8 on Turin (KDS spec §3.1)."""
        return 8 if self.is_turin else 64


# (CPUID family, first model, last model) -> product. Family and model are the combined
# extended+base values the report carries in CPUID_FAM_ID / CPUID_MOD_ID (v3+). Milan is
# family 19h models 00h-0Fh, Genoa 19h 10h-1Fh, and Bergamo/Siena (19h A0h-AFh) share the
# Genoa KDS endpoint and ARK; Turin is family 1Ah models 00h-1Fh (classic and dense).
_CPUID_RANGES: tuple[tuple[int, int, int, Product], ...] = (
    (0x19, 0x00, 0x0F, Product.MILAN),
    (0x19, 0x10, 0x1F, Product.GENOA),
    (0x19, 0xA0, 0xAF, Product.GENOA),
    (0x1A, 0x00, 0x1F, Product.TURIN),
)


def product_from_cpuid(cpuid: Cpuid) -> Product:
    for family, first, last, product in _CPUID_RANGES:
        if cpuid.family == family and first <= cpuid.model <= last:
            return product
    raise UnsupportedEvidence(
        f"CPUID_FAM_ID {cpuid.family:#04x} / CPUID_MOD_ID {cpuid.model:#04x} is not a "
        "known SEV-SNP product (Milan, Genoa, Turin)"
    )


def parse_product(text: str) -> Product | None:
    """``Milan``, ``milan``, ``Milan-B0`` (a VCEK productName with its stepping) -> Milan.

    None when the text names no product this broker knows.
    """
    head = text.strip().split("-", 1)[0].lower()
    for product in Product:
        if product.value.lower() == head:
            return product
    return None


# CPUID(1).EAX of stepping 0 parts as AMD KDS documents them: Milan 00A00F10h, Genoa
# 00A10F10h, Turin 00B00F20h (family = base 0Fh + extended; model = extended:base).
_REPRESENTATIVE_CPUID = {
    Product.MILAN: Cpuid(family=0x19, model=0x01, stepping=0),
    Product.GENOA: Cpuid(family=0x19, model=0x11, stepping=0),
    Product.TURIN: Cpuid(family=0x1A, model=0x02, stepping=0),
}


def cpuid_of(product: Product) -> Cpuid:
    """A representative CPUID of ``product`` (for synthetic reports)."""
    return _REPRESENTATIVE_CPUID[product]
