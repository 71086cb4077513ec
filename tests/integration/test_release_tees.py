"""The release flow end to end for simulated Intel TDX, Intel SGX and AWS Nitro guests.

One broker serves the module (``release_support.running_deployment``), trusting the root of
a synthetic Intel DCAP kit (``insecure-test-intel-kit``) and of a synthetic Nitro PKI
(``insecure-test-nitro-kit``) through ``insecure_test_roots``. The broker verifies at its own
clock, so the Intel kit is created now and the simulated guests issue its collateral (TCB
Info, QE Identity, CRLs) at the instant they attest.

The keys are bound to the shipped example policies (``policies/tdx-production.yaml``,
``sgx-enclave-data-key.yaml``, ``nitro-enclave.yaml``), changed only where a synthetic kit
cannot satisfy them: see :func:`example_for_kit`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from keybroker_guest.evidence import BindingInput, EvidenceSource

from broker.cli import main
from broker.guest.client import GuestClient, GuestError, tee_jwk
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.policy import load_policy
from broker.release.binding import expected_report_data
from broker.simulate.guests import (
    DEMO_MR_ENCLAVE,
    DEMO_MR_SIGNER,
    DEMO_MR_TD,
    DEMO_PCRS,
    SimulatedNitro,
    SimulatedSgx,
    SimulatedTdx,
)
from broker.simulate.intel import IntelKit
from broker.simulate.nitro import FakeNitroAuthority
from broker.timeutil import utcnow
from tests.integration.release_support import (
    Deployment,
    attest_body,
    denied,
    fetch,
    last_audit,
    running_deployment,
    seed,
)

pytestmark = pytest.mark.integration

POLICIES = Path(__file__).resolve().parents[2] / "policies"
INTEL_KIT_ROOT = "insecure-test-intel-kit"
NITRO_KIT_ROOT = "insecure-test-nitro-kit"
DEBUG_NOTE = (
    "debug mode lets the host read the guest's memory; refused unless the section sets "
    "insecure_allow_debug: true"
)


# --- the shipped examples, adapted to the kits -----------------------------------------------


def example_for_kit(file: str, name: str, root: str, **signer: str) -> dict[str, Any]:
    """The example policy ``file`` as the broker stores it (shared reference sets inlined),
    renamed ``name``, with ``signer.roots: [root]`` added (and any ``signer`` overrides).

    The examples accept evidence from any pinned vendor root (Intel's SGX Root CA, AWS's
    Nitro root): they say only ``signer.origin``, and every section carries the implicit
    clause "signer.root is a pinned vendor root", which refuses an ``insecure-test-`` root
    unless ``signer.roots`` names it. A synthetic kit cannot chain to Intel's or AWS's root,
    so the test policy must name the kit's root; every other rule of the example (origin,
    debug, reference values, TCB status, advisories, freshness, require) is kept as shipped,
    and the simulated guests report the example's reference measurements so that those rules
    are exercised rather than removed.
    """
    document = load_policy(POLICIES / file).to_json()
    (section,) = document["admit"].values()
    section["signer"] = {**section["signer"], "roots": [root], **signer}
    document["name"] = name
    return document


def reference_entry(file: str, label: str) -> dict[str, str]:
    """The claim path -> hex pairs of the reference entry labelled ``label`` in ``file``."""
    for reference in load_policy(POLICIES / file).reference_sets:
        for entry in reference.entries:
            if entry.label == label:
                return dict(entry.values)
    raise KeyError(label)


TDX_IMAGE = reference_entry("tdx-production.yaml", "go-tdx-guest SPR production TD")
SGX_ENCLAVE = reference_entry("sgx-enclave-data-key.yaml", "Signal enclave, January 2023")
NITRO_IMAGE = reference_entry("nitro-enclave.yaml", "Evervault production enclave, October 2022")


def tdx_guest(deployment: Deployment, *, debug: bool = False) -> SimulatedTdx:
    """A TD booting the example's approved image (MRTD, RTMR0-2; RTMR3 zero)."""
    rtmrs = [bytes.fromhex(TDX_IMAGE.get(f"rtmr.{index}", "00" * 48)) for index in range(4)]
    return SimulatedTdx(
        deployment.kits["intel"],
        mr_td=bytes.fromhex(TDX_IMAGE["mr_td"]),
        rtmrs=rtmrs,
        debug=debug,
    )


def sgx_guest(deployment: Deployment, *, debug: bool = False) -> SimulatedSgx:
    """The example's approved enclave (MRENCLAVE, MRSIGNER; ISV product 1, SVN 1)."""
    return SimulatedSgx(
        deployment.kits["intel"],
        mr_enclave=bytes.fromhex(SGX_ENCLAVE["mr_enclave"]),
        mr_signer=bytes.fromhex(SGX_ENCLAVE["mr_signer"]),
        debug=debug,
    )


def nitro_guest(deployment: Deployment, *, debug: bool = False) -> SimulatedNitro:
    """An enclave of the example's approved image (PCR0-2); debug mode zeroes them."""
    pcrs = {index: bytes.fromhex(NITRO_IMAGE[f"pcrs.{index}"]) for index in (0, 1, 2)}
    return SimulatedNitro(deployment.kits["nitro"], pcrs=pcrs, debug=debug)


class Example(NamedTuple):
    file: str
    root: str
    guest: Callable[..., EvidenceSource]


EXAMPLES = {
    "tdx": Example("tdx-production.yaml", INTEL_KIT_ROOT, tdx_guest),
    "sgx": Example("sgx-enclave-data-key.yaml", INTEL_KIT_ROOT, sgx_guest),
    "nitro": Example("nitro-enclave.yaml", NITRO_KIT_ROOT, nitro_guest),
}


def guest(deployment: Deployment, tee: str, *, debug: bool = False) -> EvidenceSource:
    return EXAMPLES[tee].guest(deployment, debug=debug)


def seed_example(deployment: Deployment, tee: str, key: str, secret: bytes, **signer: str) -> None:
    """Import ``secret`` as ``key`` and bind it to the kit-adapted example for ``tee``."""
    example = EXAMPLES[tee]
    policy = example_for_kit(example.file, f"{key}-policy", example.root, **signer)
    seed(deployment, key, secret, policy)


# --- the deployment ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release-tees")


@pytest.fixture(scope="module")
def kits(deployment_dir: Path) -> dict[str, Path]:
    """The saved kits; each root also as ``<name>-kit.pem`` for ``insecure_test_roots``."""
    intel = IntelKit.create(now=utcnow())
    intel.save(deployment_dir / "intel")
    root = intel.certificates["root"].public_bytes(Encoding.PEM)
    (deployment_dir / "intel-kit.pem").write_bytes(root)
    nitro = FakeNitroAuthority.generate()
    nitro.save(deployment_dir / "nitro")
    (deployment_dir / "nitro-kit.pem").write_bytes(nitro.root.public_bytes(Encoding.PEM))
    return {"intel": deployment_dir / "intel", "nitro": deployment_dir / "nitro"}


@pytest.fixture(scope="module")
async def deployment(
    deployment_dir: Path, kits: dict[str, Path], cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    roots = (deployment_dir / "intel-kit.pem", deployment_dir / "nitro-kit.pem")
    async with running_deployment(deployment_dir, softhsm, roots, kits) as running:
        yield running


def reasons(error: GuestError) -> list[tuple[str, str, Any, Any]]:
    """(kind, claim, expected, found) of each reason of a 403."""
    return [(r["kind"], r["claim"], r["expected"], r["found"]) for r in error.problem["reasons"]]


async def assert_denial_audited(deployment: Deployment, error: GuestError, key: str) -> None:
    record = await last_audit(deployment, "release")
    assert record["decision"] == "deny"
    assert record["key"]["name"] == key
    assert record["policy"]["name"] == f"{key}-policy"
    assert record["reasons"] == error.problem["reasons"]


# --- Intel TDX and SGX -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [32, 33])
@pytest.mark.parametrize("tee", ["tdx", "sgx"])
async def test_simulated_intel_guest_receives_exactly_its_key(
    deployment: Deployment, tee: str, length: int
) -> None:
    key = f"{tee}-data-{length}"
    secret = os.urandom(length)
    seed_example(deployment, tee, key, secret)

    assert await fetch(deployment, key, guest(deployment, tee)) == secret

    attested = await last_audit(deployment, "attest")
    assert attested["decision"] == "allow"
    assert attested["binding"] == "sha384"
    assert attested["signer"]["root"] == INTEL_KIT_ROOT
    released = await last_audit(deployment, "release")
    assert released["decision"] == "allow"
    assert released["key"] == {"name": key, "version": 1}
    assert released["policy"]["name"] == f"{key}-policy"
    assert released["reasons"] == []


async def test_debug_td_is_denied_by_the_production_example(deployment: Deployment) -> None:
    seed_example(deployment, "tdx", "td-disk", os.urandom(32))
    error = await denied(deployment, "td-disk", guest(deployment, "tdx", debug=True))
    assert error.status == 403
    assert error.problem["type"].endswith("/policy-denied")
    # Everything else about the TD meets the production example; debug is the one reason.
    assert reasons(error) == [("debug", "debug", False, True)]
    assert error.problem["reasons"][0]["note"] == DEBUG_NOTE
    await assert_denial_audited(deployment, error, "td-disk")


async def test_debug_sgx_enclave_is_denied_by_the_example(deployment: Deployment) -> None:
    seed_example(deployment, "sgx", "enclave-data", os.urandom(32))
    error = await denied(deployment, "enclave-data", guest(deployment, "sgx", debug=True))
    assert error.status == 403
    assert reasons(error) == [("debug", "debug", False, True)]
    await assert_denial_audited(deployment, error, "enclave-data")


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
async def test_intel_quote_that_does_not_bind_the_nonce_is_refused(
    deployment: Deployment, tee: str
) -> None:
    """REPORTDATA made for another challenge: the binding fails before any policy."""
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        nonce = await GuestClient(http).challenge(tee)
        other = await GuestClient(http).challenge(tee)
        binding = BindingInput(expected_report_data(other, jwk, "sha384"), b"", b"")
        answer = await http.post(
            "/v1/attest", json=attest_body(guest(deployment, tee), jwk, nonce, binding)
        )
    assert answer.status_code == 422
    assert answer.json()["evidence_error"] == "binding-mismatch"
    record = await last_audit(deployment, "attest")
    assert (record["decision"], record["error"]["type"]) == ("deny", "binding-mismatch")
    assert record["signer"]["root"] == INTEL_KIT_ROOT  # verified, then refused for the binding


# --- AWS Nitro -----------------------------------------------------------------------------------


async def test_simulated_nitro_enclave_receives_its_key(deployment: Deployment) -> None:
    secret = os.urandom(32)
    seed_example(deployment, "nitro", "enclave-key", secret)
    assert await fetch(deployment, "enclave-key", guest(deployment, "nitro")) == secret
    attested = await last_audit(deployment, "attest")
    assert (attested["decision"], attested["binding"]) == ("allow", "nitro-fields")
    assert attested["signer"]["origin"] == "infrastructure-provider"
    assert (await last_audit(deployment, "release"))["decision"] == "allow"


@pytest.mark.parametrize("wrong", ["nonce", "public_key"])
async def test_nitro_document_that_does_not_bind_is_refused(
    deployment: Deployment, wrong: str
) -> None:
    private = rsa.generate_private_key(65537, 3072)
    public, jwk = tee_jwk(private)
    spki = public.spki_der()
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        nonce = await GuestClient(http).challenge("nitro")
        if wrong == "nonce":  # the document carries another challenge's nonce
            other = await GuestClient(http).challenge("nitro")
            binding = BindingInput(b"", base64.b64decode(other), spki)
        else:  # the document carries another key than the one presented
            other_key, _ = tee_jwk(rsa.generate_private_key(65537, 3072))
            binding = BindingInput(b"", base64.b64decode(nonce), other_key.spki_der())
        body = attest_body(guest(deployment, "nitro"), jwk, nonce, binding)
        answer = await http.post("/v1/attest", json=body)
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["evidence_error"] == "binding-mismatch"
    assert f"document {wrong}" in problem["detail"]
    record = await last_audit(deployment, "attest")
    assert record["decision"] == "deny"
    assert record["error"] == {"type": "binding-mismatch", "detail": problem["detail"]}


async def test_debug_nitro_document_is_refused_by_the_example(deployment: Deployment) -> None:
    seed_example(deployment, "nitro", "enclave-debug", os.urandom(32))
    error = await denied(deployment, "enclave-debug", guest(deployment, "nitro", debug=True))
    assert error.status == 403
    # Debug mode zeroes PCR0-2, so the approved image no longer matches either.
    assert [kind for kind, *_ in reasons(error)] == ["debug", "reference_values"]
    assert error.problem["reasons"][0]["note"] == DEBUG_NOTE
    await assert_denial_audited(deployment, error, "enclave-debug")


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
async def test_silicon_vendor_policy_refuses_every_nitro_document(
    deployment: Deployment, debug: bool
) -> None:
    key = f"vendor-only-{'debug' if debug else 'production'}"
    seed_example(deployment, "nitro", key, os.urandom(32), origin="silicon-vendor")
    error = await denied(deployment, key, guest(deployment, "nitro", debug=debug))
    assert error.status == 403
    signer = [r for r in error.problem["reasons"] if r["kind"] == "signer"]
    assert [(r["claim"], r["expected"], r["found"]) for r in signer] == [
        ("signer.origin", "silicon-vendor", "infrastructure-provider")
    ]
    assert (
        "signer.origin == silicon-vendor, found infrastructure-provider" in error.problem["detail"]
    )
    await assert_denial_audited(deployment, error, key)


# --- keybroker guest fetch --simulate ------------------------------------------------------------


@pytest.mark.parametrize("tee", ["tdx", "sgx", "nitro"])
def test_guest_fetch_cli_simulates_each_tee(
    deployment: Deployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tee: str,
) -> None:
    """``keybroker guest fetch --tee T --simulate --kit DIR``: the demo guest of each TEE.

    The CLI's guest reports the demo measurements, so its key's policy is the example with
    the reference values of the demo image instead of the example's.
    """
    secret = os.urandom(32)
    key = f"cli-{tee}"
    seed(deployment, key, secret, _demo_policy(tee, key))
    kit = deployment.kits["nitro" if tee == "nitro" else "intel"]
    out = tmp_path / "secret"
    argv = ["guest", "fetch", "--url", deployment.base, "--key", key, "--tee", tee]
    status = main([*argv, "--simulate", "--kit", str(kit), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    assert out.read_bytes() == secret
    assert f"released {key} version 1 (32 bytes)" in capsys.readouterr().err


def _demo_policy(tee: str, key: str) -> dict[str, Any]:
    example = EXAMPLES[tee]
    document = example_for_kit(example.file, f"{key}-policy", example.root)
    demo: dict[str, str] = {
        "tdx": {"mr_td": DEMO_MR_TD.hex()},
        "sgx": {"mr_enclave": DEMO_MR_ENCLAVE.hex(), "mr_signer": DEMO_MR_SIGNER.hex()},
        "nitro": {f"pcrs.{i}": value.hex() for i, value in DEMO_PCRS.items()},
    }[tee]
    (reference,) = document["reference_values"].values()
    reference["values"] = [{"label": "keybroker demo", **demo}]
    return document
