"""The release flow end to end for vTPM guests: Azure-style CVMs behind a paravisor
(``snp-vtpm``, ``tdx-vtpm``) and a GCE-style shielded VM (``tpm``), each a real TPM 2.0
(swtpm) provisioned by :mod:`broker.simulate.swtpm` and read through tpm2-tools by the
guest's own code (:mod:`keybroker_guest.vtpm`); and the real vectors of
tests/vectors/azure-vtpm and tests/vectors/tpm through the API, which verify and are then
refused for their binding (their quotes answer their own challenges, not this broker's).

The broker trusts the synthetic AMD kit, Intel kit and vTPM CA through
``insecure_test_roots``; the real vectors chain to the pinned AMD, Intel and Google roots.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from keybroker_guest.evidence import BindingInput
from keybroker_guest.vtpm import VtpmGuest

from broker.cli import main
from broker.evidence.claims import Tee
from broker.evidence.tpm.abi import Alg
from broker.guest.client import GuestClient, tee_jwk
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.release.binding import binding_digest, expected_report_data
from broker.simulate.guests import SimulatedVtpm
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from broker.simulate.swtpm import DEMO_PCRS, SimulatedPlatform, swtpm
from broker.simulate.tpm import AkAuthority, SoftwareAk
from broker.simulate.vtpm import PARAVISOR_MEASUREMENT, tpm_quote_json
from broker.timeutil import utcnow
from tests.fakes.td_quote_service import TdQuoteService, serving
from tests.integration.release_support import (
    Deployment,
    denied,
    fetch,
    last_audit,
    running_deployment,
    seed,
)
from tests.unit.tpm.vectors import NO_NONCE, NONCE9009
from tests.unit.vtpm.vectors import TDX_DIR, snp_vectors

pytestmark = pytest.mark.integration

ROOTS = {"snp-vtpm": "insecure-test-snp-kit", "tdx-vtpm": "insecure-test-intel-kit"}
ROOTS["tpm"] = "insecure-test-vtpm-ca"
KITS = {"snp-vtpm": "snp", "tdx-vtpm": "intel", "tpm": "vtpm-ca"}
PCR_VALUES = {f"tpm.pcrs.sha256.{pcr}": value.hex() for pcr, value in DEMO_PCRS.items()}


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release-vtpm")


@pytest.fixture(scope="module")
def kits(deployment_dir: Path) -> dict[str, Path]:
    """The saved kits, each root also as ``<name>.pem`` for ``insecure_test_roots``."""
    snp = SnpKit.generate(rsa_bits=2048)
    snp.save(deployment_dir / "snp")
    (deployment_dir / "snp-kit.pem").write_bytes(snp.ark.public_bytes(Encoding.PEM))
    intel = IntelKit.create(now=utcnow())
    intel.save(deployment_dir / "intel")
    root = intel.certificates["root"].public_bytes(Encoding.PEM)
    (deployment_dir / "intel-kit.pem").write_bytes(root)
    authority = AkAuthority.generate()
    authority.save(deployment_dir / "vtpm-ca")
    root = authority.root_certificate.public_bytes(Encoding.PEM)
    (deployment_dir / "vtpm-ca.pem").write_bytes(root)
    return {name: deployment_dir / name for name in ("snp", "intel", "vtpm-ca")}


@pytest.fixture(scope="module")
async def deployment(
    deployment_dir: Path, kits: dict[str, Path], cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    roots = [deployment_dir / f"{name}.pem" for name in ("snp-kit", "intel-kit", "vtpm-ca")]
    async with running_deployment(deployment_dir, softhsm, roots, kits) as running:
        yield running


def guest(deployment: Deployment, tee: str) -> SimulatedVtpm:
    return SimulatedVtpm(deployment.kits[KITS[tee]], tee)


def vtpm_policy(tee: str, name: str, **reference: str) -> dict[str, Any]:
    """Admit ``tee`` guests of the kit's root whose vTPM PCR0 and PCR4 are the simulated
    boot's (and, behind the paravisor, whose paravisor is the simulated one)."""
    values = {**PCR_VALUES, **reference}
    section: dict[str, Any] = {"signer": {"roots": [ROOTS[tee]]}, "reference_values": ["boot"]}
    if tee == "snp-vtpm":
        values["measurement"] = PARAVISOR_MEASUREMENT.hex()
        section["minimum_tcb"] = {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0}
        section["require"] = [{"claim": "vmpl", "equals": 0}]
    return {
        "format": "keybroker-policy/1",
        "name": name,
        "version": 1,
        "reference_values": {"boot": {"tee": tee, "values": [values]}},
        "admit": {tee: section},
    }


# --- simulated guests on swtpm -----------------------------------------------------------------


@pytest.mark.parametrize("tee", ["snp-vtpm", "tdx-vtpm", "tpm"])
async def test_a_vtpm_guest_on_swtpm_receives_its_key(deployment: Deployment, tee: str) -> None:
    key = f"{tee}-disk"
    secret = os.urandom(33)
    seed(deployment, key, secret, vtpm_policy(tee, f"{key}-policy"))

    assert await fetch(deployment, key, guest(deployment, tee)) == secret

    attested = await last_audit(deployment, "attest")
    assert (attested["decision"], attested["tee"]) == ("allow", tee)
    assert attested["binding"] == "extra-data-sha384"
    assert attested["signer"]["root"] == ROOTS[tee]
    assert attested["signer"]["origin"] == "infrastructure-provider"
    released = await last_audit(deployment, "release")
    assert (released["decision"], released["key"]["name"]) == ("allow", key)


@pytest.mark.parametrize("tee", ["snp-vtpm", "tdx-vtpm", "tpm"])
def test_guest_fetch_cli_on_swtpm(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str], tee: str
) -> None:
    """``keybroker guest fetch --tee T --simulate --kit DIR``: the lean client's flow (the
    binding digest as the quote's extraData) against the vTPM on swtpm."""
    key = f"{tee}-cli"
    secret = os.urandom(32)
    seed(deployment, key, secret, vtpm_policy(tee, f"{key}-policy"))
    out = tmp_path / "secret"
    argv = ["guest", "fetch", "--url", deployment.base, "--key", key, "--tee", tee, "--simulate"]
    status = main([*argv, "--kit", str(deployment.kits[KITS[tee]]), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    assert out.read_bytes() == secret
    assert f"released {key} version 1 (32 bytes)" in capsys.readouterr().err


async def test_a_guest_that_booted_otherwise_is_denied_by_its_pcrs(
    deployment: Deployment,
) -> None:
    key = "snp-vtpm-other-boot"
    policy = vtpm_policy("snp-vtpm", f"{key}-policy", **{"tpm.pcrs.sha256.4": "ab" * 32})
    seed(deployment, key, os.urandom(32), policy)
    error = await denied(deployment, key, guest(deployment, "snp-vtpm"))
    assert error.status == 403
    assert [reason["kind"] for reason in error.problem["reasons"]] == ["reference_values"]


@dataclass
class Renamed:
    """``inner``'s evidence under another tee name."""

    inner: SimulatedVtpm
    tee: str

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        return self.inner.produce(binding)


async def test_trustees_tee_names_are_aliases(deployment: Deployment) -> None:
    """Trustee's clients say az-snp-vtpm: the broker hears snp-vtpm."""
    key = "alias-disk"
    secret = os.urandom(32)
    seed(deployment, key, secret, vtpm_policy("snp-vtpm", f"{key}-policy"))
    source = Renamed(guest(deployment, "snp-vtpm"), "az-snp-vtpm")
    assert await fetch(deployment, key, source) == secret
    assert (await last_audit(deployment, "attest"))["tee"] == "snp-vtpm"


@dataclass
class AzureTdAskingItsHost:
    """A TDX CVM on swtpm whose guest side is the real one (``VtpmGuest``, no TD quote given):
    it asks the quote service at ``url`` (the stand-in for Azure's ``/acc/tdquote``) for the
    quote of the TDREPORT in its HCL report."""

    kit_dir: Path
    url: str
    tee: str = "tdx-vtpm"

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        with swtpm(self.kit_dir / "swtpm-quote-service") as tools:
            platform = SimulatedPlatform(tools)
            platform.boot()
            intel = IntelKit.load(self.kit_dir)
            platform.azure_tdx(intel)  # the HCL report; its quote is the service's to make
            collateral = intel.collateral(Tee.TDX, now=utcnow())
            vtpm = VtpmGuest(self.tee, tools, td_quote_url=self.url, collateral=collateral)
            return vtpm.produce(binding)


async def test_a_td_gets_its_quote_from_the_hosts_quote_service(deployment: Deployment) -> None:
    key = "tdx-vtpm-imds"
    secret = os.urandom(33)
    seed(deployment, key, secret, vtpm_policy("tdx-vtpm", f"{key}-policy"))
    kit = deployment.kits[KITS["tdx-vtpm"]]
    service = TdQuoteService(IntelKit.load(kit))
    with serving(service) as url:
        assert await fetch(deployment, key, AzureTdAskingItsHost(kit, url)) == secret
    assert len(service.requests) == 1
    attested = await last_audit(deployment, "attest")
    assert (attested["decision"], attested["tee"]) == ("allow", "tdx-vtpm")


async def test_a_quote_of_another_tdreport_is_refused(deployment: Deployment) -> None:
    """The service answers a quote over other REPORTDATA: it vouches for nothing here."""
    kit = deployment.kits[KITS["tdx-vtpm"]]
    other = IntelKit.load(kit).tdx_quote(bytes(64))
    answer = json.dumps({"quote": base64.urlsafe_b64encode(other).decode()}).encode()
    with serving(TdQuoteService(answer=answer)) as url:
        await refused(
            deployment,
            AzureTdAskingItsHost(kit, url),
            "runtime-data-mismatch",
            "the HCL report and the quote answer different requests",
        )


# --- what must be refused, with the exact error --------------------------------------------------


@dataclass
class Given:
    """Evidence as given (a real vector, or a simulated guest's altered on purpose)."""

    tee: str
    evidence: bytes
    collateral: Mapping[str, bytes] = field(default_factory=dict)

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        return self.evidence, dict(self.collateral)


async def attest(deployment: Deployment, source: Any) -> httpx.Response:
    """One attest request for a fresh challenge; the evidence binds it when ``source``
    makes it from the binding."""
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    async with httpx.AsyncClient(base_url=deployment.base, timeout=60) as http:
        nonce = await GuestClient(http).challenge(source.tee)
        binding = BindingInput(
            expected_report_data(nonce, jwk, "sha384"),
            b"",
            b"",
            binding_digest(nonce, jwk, "sha384"),
        )
        evidence, collateral = source.produce(binding)
        return await http.post(
            "/v1/attest",
            json={
                "tee": source.tee,
                "evidence": base64.b64encode(evidence).decode(),
                "tee_pubkey": jwk,
                "nonce": nonce,
                "collateral": {k: base64.b64encode(v).decode() for k, v in collateral.items()},
            },
        )


async def refused(deployment: Deployment, source: Any, error: str, detail: str) -> dict[str, Any]:
    """The attest answer is 422 ``error`` with ``detail`` in it, and is audited so."""
    answer = await attest(deployment, source)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert (problem["evidence_error"], detail in problem["detail"]) == (error, True), problem
    record = await last_audit(deployment, "attest")
    assert record["decision"] == "deny"
    assert record["error"] == {"type": error, "detail": problem["detail"]}
    return record


class Altered:
    """A simulated guest whose bundle ``change`` edits after it is made."""

    def __init__(self, inner: SimulatedVtpm, change: Any) -> None:
        self.inner, self.change, self.tee = inner, change, inner.tee

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        evidence, collateral = self.inner.produce(binding)
        document = json.loads(evidence)
        self.change(document, collateral, binding)
        return json.dumps(document).encode(), collateral


def _flip(text: str, offset: int) -> str:
    data = bytearray(base64.b64decode(text))
    data[offset] ^= 1
    return base64.b64encode(bytes(data)).decode()


def flip_quote(document: dict[str, Any], *_: Any) -> None:
    document["tpm_quote"]["message"] = _flip(document["tpm_quote"]["message"], 40)


def flip_pcr(document: dict[str, Any], *_: Any) -> None:
    value = document["tpm_quote"]["pcrs"]["sha256"]["4"]
    document["tpm_quote"]["pcrs"]["sha256"]["4"] = f"{int(value[0], 16) ^ 1:x}{value[1:]}"


def flip_runtime_data(document: dict[str, Any], *_: Any) -> None:
    # inside the runtime data's JSON (after the 0x4D4-byte header and the first member name)
    document["hcl_report"] = _flip(document["hcl_report"], 0x4D4 + 200)


def wrong_ak(document: dict[str, Any], _: Any, binding: BindingInput) -> None:
    """A quote with the right binding and PCRs, signed by a key that is not the AK."""
    impostor = SoftwareAk.generate()
    pcrs = {
        int(index): bytes.fromhex(value)
        for index, value in document["tpm_quote"]["pcrs"]["sha256"].items()
    }
    document["tpm_quote"] = tpm_quote_json(impostor.quote({Alg.SHA256: pcrs}, binding.digest))


def other_ak_chain(document: dict[str, Any], collateral: dict[str, bytes], _: Any) -> None:
    """The AK certificate's issuer replaced by another CA's of the same name."""
    collateral["ak_chain"] = AkAuthority.generate().chain_pem()


@pytest.mark.parametrize(
    ("tee", "change", "error", "detail"),
    [
        ("snp-vtpm", flip_quote, "signature-invalid", "TPM quote: TPMT_SIGNATURE RSASSA/sha256"),
        ("tpm", flip_quote, "signature-invalid", "does not verify with the AK"),
        ("snp-vtpm", flip_pcr, "pcr-mismatch", "TPMS_QUOTE_INFO.pcrDigest"),
        ("tdx-vtpm", flip_pcr, "pcr-mismatch", "TPMS_QUOTE_INFO.pcrDigest"),
        ("snp-vtpm", flip_runtime_data, "runtime-data-mismatch", "REPORT_DATA[0:32]"),
        ("tdx-vtpm", flip_runtime_data, "runtime-data-mismatch", "REPORTDATA[0:32]"),
        ("snp-vtpm", wrong_ak, "signature-invalid", "does not verify with the AK"),
        ("tpm", wrong_ak, "signature-invalid", "does not verify with the AK"),
        ("tpm", other_ak_chain, "chain-invalid", "AK certificate"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
async def test_altered_vtpm_evidence_is_refused_with_its_error(
    deployment: Deployment, tee: str, change: Any, error: str, detail: str
) -> None:
    await refused(deployment, Altered(guest(deployment, tee), change), error, detail)


@pytest.mark.parametrize("tee", ["snp-vtpm", "tpm"])
async def test_a_quote_for_another_challenge_is_a_binding_mismatch(
    deployment: Deployment, tee: str
) -> None:
    source = guest(deployment, tee)
    other = BindingInput(bytes(64), b"", b"", os.urandom(48))
    record = await refused(
        deployment, Given(tee, *source.produce(other)), "binding-mismatch", "TPM quote extraData"
    )
    assert record["signer"]["root"] == ROOTS[tee]  # verified, then refused for the binding


# --- the real vectors through the API ------------------------------------------------------------


@pytest.mark.parametrize("vector", snp_vectors(), ids=lambda vector: vector.name)
async def test_every_azure_snp_vector_verifies_then_binds_nothing_of_ours(
    deployment: Deployment, vector: Any
) -> None:
    record = await refused(
        deployment,
        Given("az-snp-vtpm", vector.evidence, vector.collateral),
        "binding-mismatch",
        "TPM quote extraData is neither SHA-384 nor SHA-512",
    )
    assert record["signer"]["root"] == f"amd-ark-{vector.product.lower()}"
    assert record["tee"] == "snp-vtpm"


@pytest.mark.parametrize("name", ["evidence-v0.json", "evidence-v1.json"])
async def test_the_azure_tdx_vectors_need_collateral_this_broker_cannot_fetch(
    deployment: Deployment, name: str
) -> None:
    """Intel's TCB Info for their FMSPC is not published with them (the manifest) and this
    broker has no network: the lookup, which reads the FMSPC from the TD quote inside
    Trustee's JSON, fails closed with 503 before anything is decided. (Offline, every
    check the evidence proves passes first: tests/unit/vtpm/test_verify_real.py.)"""
    evidence = (TDX_DIR / name).read_bytes()
    answer = await attest(deployment, Given("az-tdx-vtpm", evidence))
    assert answer.status_code == 503, answer.text
    assert "api.trustedservices.intel.com/tdx/certification/v4/tcb" in answer.json()["detail"]


@pytest.mark.parametrize("path", [NONCE9009, NO_NONCE], ids=lambda path: path.stem)
async def test_the_gce_vectors_verify_then_bind_nothing_of_ours(
    deployment: Deployment, path: Path
) -> None:
    evidence = path.read_bytes()  # noqa: ASYNC240 - a small vector file
    record = await refused(deployment, Given("tpm", evidence), "binding-mismatch", "extraData")
    assert record["signer"]["root"] == "google-tpm-ek-root-2018"
