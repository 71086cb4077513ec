"""The claim catalogue against what the verifiers produce, and docs/claims.md against it.

Every claim of every real vector (tests/vectors, the copies of ../shared/vectors) is in the
catalogue with its type; every definition is produced with a value by a real vector or, where
no real vector carries one (a Turin TCB, a v5 report, a TD 1.5 quote, a TDX event log), by
the synthetic vendors; and docs/claims.md is what the generator prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from broker.errors import CollateralUnavailable, EvidenceError, TcbLevelNotFound
from broker.evidence.claims import (
    SCALAR_KINDS,
    ClaimDefinition,
    ClaimKind,
    Claims,
    Tee,
    hex_claim,
    integer_claim,
    list_claim,
    object_claim,
)
from broker.evidence.dcap.verify import clear_caches
from broker.evidence.nitro.abi import PCR_INDEX_MAX
from broker.evidence.nitro.verify import SHA384_PCR_SIZE
from broker.evidence.registry import verifier_for
from broker.evidence.snp.products import Product
from broker.policy import schema
from broker.policy.catalogue import CATALOGUE, SOURCES, Catalogue
from broker.policy.claims_doc import main, markdown
from broker.policy.model import MEASUREMENT_CLAIMS, SNP_TCB_CLAIM, SNP_TCB_COMPONENTS
from broker.simulate.intel import IntelKit, Level, event_log
from broker.simulate.snp import SnpKit
from broker.simulate.tpm import DEMO_BOOT, AkAuthority, SoftwareAk
from broker.simulate.tpm import event_log as tpm_event_log
from broker.simulate.vtpm import bundle, runtime_data, snp_hcl_report, tdx_evidence
from tests.unit.dcap.vectors import (
    COLLATERAL_LESS_NOW,
    DEBUG_TD_QUOTE,
    GCP_QUOTE,
    JUNE_2023,
    OCCLUM_QUOTE,
    SIGNAL_2022_DIR,
    SIGNAL_2022_NOW,
    SIGNAL_2022_QUOTE,
    SIGNAL_2023_DIR,
    SIGNAL_2023_NOW,
    SIGNAL_2023_QUOTE,
    signal_collateral,
    spr_collateral,
    spr_quote,
)
from tests.unit.nitro.vectors import REAL_DOCUMENTS
from tests.unit.snp.conftest import VECTORS as SNP_VECTORS
from tests.unit.tpm.vectors import AT as GCE_AT
from tests.unit.tpm.vectors import NO_NONCE, NONCE9009
from tests.unit.vtpm.vectors import TDX_DIR as AZURE_TDX
from tests.unit.vtpm.vectors import snp_vectors as azure_snp_vectors

from .support import REPO

VECTORS = REPO / "tests" / "vectors"
AZURE_SNP = VECTORS / "azure-vtpm" / "trustee-az-snp-vtpm"
#: azure-vtpm/trustee-az-snp-vtpm/MANIFEST.md: inside every VCEK window (2025-01-28 to
#: 2030-05-02).
AZURE_AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence, how to verify it, and the vector folder it comes from."""

    label: str
    tee: Tee
    folder: str
    verify: Callable[[], Claims] = field(repr=False)


def _verify(tee: Tee, evidence: bytes, collateral: Mapping[str, bytes], at: datetime) -> Claims:
    clear_caches()  # each vector verified from its own collateral, as a fresh broker would
    return verifier_for(tee).verify(evidence, collateral, now=at)


def _azure_vcek_bundle() -> dict[str, bytes]:
    """vcek.pem holds the VCEK, then the Milan ASK and ARK (its manifest)."""
    bundle = (AZURE_SNP / "vcek.pem").read_bytes()
    end = b"-----END CERTIFICATE-----\n"
    split = bundle.index(end) + len(end)
    return {"vcek": bundle[:split], "cert_chain": bundle[split:]}


def _real() -> Iterator[Evidence]:
    for vector in SNP_VECTORS:
        yield Evidence(
            vector.name,
            Tee.SNP,
            f"snp/{vector.name}",
            lambda v=vector: _verify(Tee.SNP, v.evidence(), v.collateral_bytes(), v.now),
        )
    for report, collateral in (
        ("hcl-report.snp_report.bin", _azure_vcek_bundle),
        (
            "evidence-v2.snp_report.bin",
            lambda: {"vcek": (AZURE_SNP / "evidence-v2.vcek.der").read_bytes()},
        ),
        (
            "evidence-genoa.snp_report.bin",
            lambda: {"vcek": (AZURE_SNP / "vcek-genoa.pem").read_bytes()},
        ),
    ):
        yield Evidence(
            f"azure-{report.split('.')[0]}",
            Tee.SNP,
            "azure-vtpm/trustee-az-snp-vtpm",
            lambda r=report, c=collateral: _verify(
                Tee.SNP, (AZURE_SNP / r).read_bytes(), c(), AZURE_AT
            ),
        )
    yield Evidence(
        "trustee-tdx-v4-debug",
        Tee.TDX,
        "tdx/trustee-tdx-v4-debug",
        lambda: _verify(Tee.TDX, DEBUG_TD_QUOTE.read_bytes(), spr_collateral(), JUNE_2023),
    )
    for directory, quote, at in (
        (SIGNAL_2023_DIR, SIGNAL_2023_QUOTE, SIGNAL_2023_NOW),
        (SIGNAL_2022_DIR, SIGNAL_2022_QUOTE, SIGNAL_2022_NOW),
    ):
        yield Evidence(
            directory.name,
            Tee.SGX,
            f"sgx/{directory.name}",
            lambda d=directory, q=quote, t=at: _verify(
                Tee.SGX, q.read_bytes(), signal_collateral(d), t
            ),
        )
    for document in REAL_DOCUMENTS:
        yield Evidence(
            document.name,
            Tee.NITRO,
            "nitro/evervault-docs",
            lambda d=document: _verify(Tee.NITRO, d.data, {}, d.at),
        )
    for vector in azure_snp_vectors():
        yield Evidence(
            f"azure-vtpm-{vector.name}",
            Tee.SNP_VTPM,
            "azure-vtpm/trustee-az-snp-vtpm",
            lambda v=vector: _verify(Tee.SNP_VTPM, v.evidence, v.collateral, AZURE_AT),
        )
    for attestation in (NONCE9009, NO_NONCE):
        yield Evidence(
            attestation.name,
            Tee.TPM,
            "tpm/go-tpm-tools-gce-cos85",
            lambda a=attestation: _verify(Tee.TPM, a.read_bytes(), {}, GCE_AT),
        )


REAL = tuple(_real())


@dataclass(frozen=True)
class Refused:
    """Real evidence that verifies to no claims, and the error its manifest leads to expect."""

    folder: str
    tee: Tee
    read: Callable[[], bytes] = field(repr=False)
    collateral: Callable[[], Mapping[str, bytes]] = field(repr=False)
    at: datetime
    error: type[EvidenceError]


REFUSED = (
    Refused(
        "tdx/go-tdx-guest-spr-v4", Tee.TDX, spr_quote, spr_collateral, JUNE_2023, TcbLevelNotFound
    ),
    Refused(
        "tdx/go-tdx-guest-gcp-ccel",
        Tee.TDX,
        GCP_QUOTE.read_bytes,
        dict,
        COLLATERAL_LESS_NOW,
        CollateralUnavailable,
    ),
    Refused(
        "azure-vtpm/trustee-az-tdx-vtpm",
        Tee.TDX_VTPM,
        (AZURE_TDX / "evidence-v1.json").read_bytes,
        dict,
        AZURE_AT,
        CollateralUnavailable,
    ),
    Refused(
        "sgx/trustee-occlum-v3",
        Tee.SGX,
        OCCLUM_QUOTE.read_bytes,
        dict,
        COLLATERAL_LESS_NOW,
        CollateralUnavailable,
    ),
)
#: Vector folders that hold certificates only, no evidence.
WITHOUT_EVIDENCE = ("snp/amd-kds-cert-chains", "snp/virtee-sev-turin-vcek", "azure-vtpm/roots")
TEE_FOLDERS = ("snp", "tdx", "sgx", "nitro", "azure-vtpm", "tpm")


# --- walking a claims document ---------------------------------------------------------------


@dataclass
class Walk:
    """What one claims document showed of a TEE's catalogue."""

    catalogue: Catalogue
    problems: list[str] = field(default_factory=list)
    present: set[str] = field(default_factory=set)
    """Names of the definitions met, with a value or null."""
    valued: set[ClaimDefinition] = field(default_factory=set)
    """The definitions met with a value (not null)."""


def walk(claims: Claims) -> Walk:
    result = Walk(CATALOGUE[claims.tee])
    for name, value in claims.document().items():
        _visit(result, name, value)
    return result


def _visit(result: Walk, path: str, value: Any) -> None:
    definition = result.catalogue.find(path)
    if definition is None:
        result.problems.append(f"{path}: not in the {result.catalogue.tee} catalogue")
        return
    result.present.add(definition.name)
    if value is None:
        if not definition.nullable:
            result.problems.append(f"{path}: null, but {definition.type}")
        return
    result.valued.add(definition)
    if not _has_type(definition, value):
        result.problems.append(f"{path}: {value!r} is not {definition.type}")
        return
    if definition.kind is ClaimKind.LIST:
        for index, entry in enumerate(value):
            _visit(result, f"{path}.{index}", entry)
    elif definition.kind in (ClaimKind.OBJECT, ClaimKind.MAP):
        for key, member in value.items():
            _visit(result, f"{path}.{key}", member)


def _has_type(definition: ClaimDefinition, value: Any) -> bool:
    kind, size = definition.kind, definition.size
    if kind is ClaimKind.STRING:
        return type(value) is str
    if kind is ClaimKind.INTEGER:
        return type(value) is int
    if kind is ClaimKind.BOOLEAN:
        return type(value) is bool
    if kind is ClaimKind.HEX:
        is_hex = type(value) is str and re.fullmatch(r"(?:[0-9a-f]{2})*", value) is not None
        return is_hex and (size is None or len(value) == 2 * size)
    if kind is ClaimKind.OBJECT:
        return type(value) is dict
    if kind is ClaimKind.LIST:
        return type(value) is list and (size is None or len(value) <= size)
    return type(value) is dict  # a MAP: its keys are checked as paths by _visit


# --- the catalogue holds every claim of every real vector -----------------------------------


@pytest.mark.parametrize("evidence", REAL, ids=lambda e: e.label)
def test_every_claim_of_a_real_vector_is_in_the_catalogue_with_its_type(
    evidence: Evidence,
) -> None:
    claims = evidence.verify()
    assert claims.tee is evidence.tee
    assert walk(claims).problems == []


@pytest.mark.parametrize("refused", REFUSED, ids=lambda r: r.folder)
def test_the_real_vectors_that_produce_no_claims_are_refused(refused: Refused) -> None:
    with pytest.raises(refused.error):
        _verify(refused.tee, refused.read(), refused.collateral(), refused.at)


def test_every_vector_folder_is_read() -> None:
    folders = {
        f"{tee}/{path.name}"
        for tee in TEE_FOLDERS
        for path in (VECTORS / tee).iterdir()
        if path.is_dir()
    }
    read = {e.folder for e in REAL} | {r.folder for r in REFUSED} | set(WITHOUT_EVIDENCE)
    assert folders == read


def _shared_vectors() -> Path | None:
    """../shared/vectors next to the checkout (KEYBROKER_SHARED_VECTORS overrides), if any."""
    configured = os.environ.get("KEYBROKER_SHARED_VECTORS")
    shared = Path(configured) if configured else REPO.parent / "shared" / "vectors"
    return shared if shared.is_dir() else None


def test_tests_vectors_holds_every_real_evidence_of_the_shared_vectors() -> None:
    """So the tests above read every real vector of ../shared/vectors that a verifier reads:
    each folder of a TEE keybroker verifies."""
    shared = _shared_vectors()
    if shared is None:
        pytest.skip("../shared/vectors is not next to this checkout")
    wanted = [
        path.relative_to(shared)
        for tee in TEE_FOLDERS
        for path in (shared / tee).rglob("*")
        if path.is_file()
    ]
    different = [
        str(p)
        for p in wanted
        if not (VECTORS / p).is_file() or (VECTORS / p).read_bytes() != (shared / p).read_bytes()
    ]
    assert different == []


# --- every definition is produced with a value ----------------------------------------------

SYNTHETIC_AT = datetime(2025, 6, 1, tzinfo=UTC)


def _synthetic() -> Iterator[Claims]:
    """What no real vector carries: a Turin v5 report (fmc, mitigation vectors), a TD 1.5
    quote with an event log, on a platform whose TCB level names an advisory; a TD behind a
    paravisor (its Intel collateral is not published with the real one), and a vTPM AK
    certificate and boot log behind a paravisor."""
    turin = SnpKit.generate(Product.TURIN)
    yield verifier_for(Tee.SNP).verify(
        turin.sign(turin.report(version=5)),
        turin.collateral(),
        now=SYNTHETIC_AT,
        extra_roots=[turin.root()],
    )
    intel = IntelKit.create(now=SYNTHETIC_AT)
    log, rtmrs = event_log([(1, 0x80000008, b"firmware"), (3, 0x0D, b"kernel cmdline")])
    quote = intel.tdx_quote(version=5, mr_service_td=b"\x22" * 48, rtmrs=rtmrs)
    levels = (Level("SWHardeningNeeded", advisories=("INTEL-SA-00615",)),)
    collateral = intel.collateral(
        Tee.TDX,
        now=SYNTHETIC_AT,
        tcb_info=intel.tcb_info(Tee.TDX, now=SYNTHETIC_AT, levels=levels),
        event_log=log,
    )
    clear_caches()
    yield verifier_for(Tee.TDX).verify(
        quote, collateral, now=SYNTHETIC_AT, extra_roots=intel.extra_roots()
    )
    yield from _synthetic_vtpm(
        turin, intel, intel.tcb_info(Tee.TDX, now=SYNTHETIC_AT, levels=levels)
    )


def _synthetic_vtpm(amd: SnpKit, intel: IntelKit, tcb_info: bytes) -> Iterator[Claims]:
    ak = SoftwareAk.generate()
    authority = AkAuthority.generate()
    runtime = runtime_data(ak.jwk())
    log, pcrs = tpm_event_log(DEMO_BOOT)
    tpm_parts = {
        "tpm_quote": ak.quote(pcrs, b"nonce"),  # every bank: sha1, sha256 and sha384
        "ak_cert": authority.certify(ak.public_key()).public_bytes(Encoding.DER),
        "ak_chain": [authority.chain_der()],
        "event_log": log,
    }
    yield verifier_for(Tee.SNP_VTPM).verify(
        bundle({"hcl_report": snp_hcl_report(amd, runtime), **tpm_parts}),
        amd.collateral(),
        now=SYNTHETIC_AT,
        extra_roots=[amd.root(), authority.root()],
    )
    hcl, td_quote = tdx_evidence(intel, runtime)
    evidence = bundle({"hcl_report": hcl, "td_quote": td_quote, **tpm_parts})
    clear_caches()
    yield verifier_for(Tee.TDX_VTPM).verify(
        evidence,
        intel.collateral(Tee.TDX, now=SYNTHETIC_AT, tcb_info=tcb_info),
        now=SYNTHETIC_AT,
        extra_roots=[*intel.extra_roots(), authority.root()],
    )


def test_every_definition_is_produced_with_a_value() -> None:
    present: dict[Tee, set[str]] = {tee: set() for tee in Tee}
    valued: set[ClaimDefinition] = set()
    for claims in [evidence.verify() for evidence in REAL] + list(_synthetic()):
        result = walk(claims)
        assert result.problems == []
        present[claims.tee] |= result.present
        valued |= result.valued
    for tee, catalogue in CATALOGUE.items():
        assert sorted({d.name for d in catalogue} - present[tee]) == [], tee
    defined = {d for source in SOURCES for d in source.definitions}
    # signer.product is null for Intel and AWS evidence, but has a value for SNP
    assert sorted(d.name for d in defined - valued) == []


def test_the_walk_finds_an_unknown_claim_a_wrong_type_and_a_wrong_size() -> None:
    claims = REAL[0].verify()
    fields = {
        **claims.plain_fields(),
        "extra": 1,
        "vmpl": "0",
        "measurement": "ab" * 32,
        "cpuid": None,
        "version": None,
    }
    broken = Claims(claims.tee, claims.signer, claims.debug, fields)
    assert sorted(walk(broken).problems) == [
        "extra: not in the snp catalogue",
        f"measurement: '{'ab' * 32}' is not hex, 48 bytes",
        "version: null, but integer",
        "vmpl: '0' is not integer",
    ]


# --- finding a claim -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tee", "path", "name"),
    [
        (Tee.SNP, "reported_tcb.fmc", "reported_tcb.fmc"),
        (Tee.SNP, "reported_tcb", "reported_tcb"),
        (Tee.SNP, "reported_tcb.fmc.x", None),
        (Tee.SNP, "signer.product", "signer.product"),
        (Tee.SNP, "rtmr.0", None),
        (Tee.TDX, "rtmr.3", "rtmr.N"),
        (Tee.TDX, "rtmr.03", "rtmr.N"),  # the evaluator reads a list index as a number
        (Tee.TDX, "rtmr.4", None),
        (Tee.TDX, "rtmr.x", None),
        (Tee.TDX, "rtmr.N", None),
        (Tee.TDX, "event_log.7.digest", "event_log.N.digest"),
        (Tee.TDX, "advisory_ids.40", "advisory_ids.N"),
        (Tee.TDX, "td_attributes.sept_ve_disable", "td_attributes.sept_ve_disable"),
        (Tee.TDX, "td_attributes.anything_intel_adds", None),
        (Tee.SGX, "advisory_ids.0", "advisory_ids.N"),
        (Tee.SGX, "mr_td", None),
        (Tee.NITRO, "pcrs.31", "pcrs.N"),
        (Tee.NITRO, "pcrs.32", None),
        (Tee.NITRO, "pcrs.08", None),  # a map is keyed by the decimal index itself
        (Tee.NITRO, "pcrs.٣", None),
        (Tee.NITRO, "", None),
    ],
)
def test_find(tee: Tee, path: str, name: str | None) -> None:
    found = CATALOGUE[tee].find(path)
    assert (found.name if found is not None else None) == name


def test_a_catalogue_refuses_a_repeated_name_and_an_undefined_parent() -> None:
    with pytest.raises(ValueError, match=r"^snp claim 'version' is defined twice$"):
        Catalogue(Tee.SNP, [integer_claim("version", "a"), integer_claim("version", "b")])
    with pytest.raises(ValueError, match=r"^snp claim 'a\.b' needs 'a' defined as object$"):
        Catalogue(Tee.SNP, [integer_claim("a.b", "member of nothing")])
    with pytest.raises(ValueError, match=r"^tdx claim 'a\.N' needs 'a' defined as list or map$"):
        Catalogue(Tee.TDX, [object_claim("a", "an object"), hex_claim("a.N", 48, "entry")])
    with pytest.raises(ValueError, match=r"^tdx claim 'a\.b' needs 'a' defined as object$"):
        Catalogue(Tee.TDX, [list_claim("a", 4, "a list"), hex_claim("a.b", 48, "member")])


# --- the catalogue agrees with the policy model and schema ----------------------------------


def test_the_measurement_and_minimum_tcb_claims_are_comparable_claims() -> None:
    for tee, names in MEASUREMENT_CLAIMS.items():
        for name in names:
            found = CATALOGUE[Tee(tee)].find(name)
            assert found is not None, (tee, name)
            assert found.kind is ClaimKind.HEX, (tee, name)
    tcb = CATALOGUE[Tee.SNP].find(SNP_TCB_CLAIM)
    assert tcb is not None
    members = [d.name.rpartition(".")[2] for d in CATALOGUE[Tee.SNP].members(tcb)]
    assert members == list(SNP_TCB_COMPONENTS)


def test_every_reference_value_is_a_hex_claim_of_its_size() -> None:
    defs = schema.SCHEMA["$defs"]
    for tee in Tee:
        reference = defs[f"{tee}Reference"]
        schemas = {
            name: s
            for name, s in reference["properties"].items()
            if name not in ("label", "provenance")
        }
        for pattern, value in reference.get("patternProperties", {}).items():
            prefix = "tpm.pcrs.sha256." if pattern.startswith("^tpm") else "pcrs."
            paths = [f"{prefix}{i}" for i in range(100) if re.fullmatch(pattern, f"{prefix}{i}")]
            assert len(paths) == (24 if prefix.startswith("tpm") else PCR_INDEX_MAX + 1)
            schemas |= dict.fromkeys(paths, value)
        for name, value in schemas.items():
            found = CATALOGUE[tee].find(name)
            size = int(value["$ref"].removeprefix("#/$defs/hex"))
            assert found is not None, (tee, name)
            assert (found.kind, found.size) == (ClaimKind.HEX, size), (tee, name)


def test_nitro_pcrs_are_what_the_verifier_accepts() -> None:
    pcrs = CATALOGUE[Tee.NITRO].find("pcrs")
    pcr = CATALOGUE[Tee.NITRO].find("pcrs.0")
    assert pcrs is not None
    assert pcr is not None
    assert (pcrs.size, pcr.size) == (PCR_INDEX_MAX + 1, SHA384_PCR_SIZE)


def test_every_kind_a_comparison_reads_is_a_scalar() -> None:
    assert {kind for kind in ClaimKind if kind in SCALAR_KINDS} == {
        ClaimKind.STRING,
        ClaimKind.INTEGER,
        ClaimKind.BOOLEAN,
        ClaimKind.HEX,
    }


# --- docs/claims.md ---------------------------------------------------------------------------


def test_docs_claims_md_is_the_catalogue() -> None:
    documented = (REPO / "docs" / "claims.md").read_text()
    assert documented == markdown(), (
        "docs/claims.md is out of step: python -m broker.policy.claims_doc > docs/claims.md"
    )


def test_the_generator_prints_the_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == markdown()
    with pytest.raises(SystemExit) as exit_info:
        main(["--markdown"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --markdown" in capsys.readouterr().err


def test_the_markdown_has_one_row_per_definition_with_its_type() -> None:
    text = markdown()
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| ", text, flags=re.MULTILINE)
    assert rows == [(d.name, d.type) for source in SOURCES for d in source.definitions]
    assert "| `rtmr` | list of 4 |" in text
    assert "| `rtmr.N` | hex, 48 bytes |" in text
    assert "| `cpuid` | object or null |" in text
    assert "| `pcrs` | map of 32 |" in text
