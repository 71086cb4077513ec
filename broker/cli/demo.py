"""The `make run` demo: a simulated SNP guest (and its vTPM twin, ``--tee snp-vtpm``), a key
it may fetch, and the policy that says so; and a simulated Nitro enclave's KMS data key.

``prepare`` creates a synthetic AMD chain under ``<state>/demo/snp`` and a synthetic Nitro
PKI under ``<state>/demo/nitro`` (once) and returns settings that trust their roots through
``insecure_test_roots`` (the broker announces that in its log). ``seed`` imports the demo key
``disk-key`` (a readable secret, so a newcomer can see what was released), publishes
``policies/insecure-demo-simulated-snp.yaml`` and binds them, and lets Confidential
Containers guests fetch it too: exposure ``broker-memory`` and KBS path
``default/key/disk-key`` (docs/kbs.md). It also generates ``enclave-data-key`` in the HSM
(KMS alias ``alias/enclave-data-key``, exposure ``broker-memory`` for ``Decrypt`` with a
``Recipient``) bound to ``policies/insecure-demo-simulated-nitro.yaml``, which admits the
simulated enclave and refuses debug-mode documents (docs/kms.md). Nothing here is ever done
outside ``keybroker dev run --demo``; no module of the broker imports it but the command
line's.
"""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from broker.admin.service import AdminService
from broker.cli import locate
from broker.localstate.democa import DemoTls
from broker.policy.loader import load_policy_text
from broker.roles import Principal
from broker.runtime import Runtime
from broker.settings import Settings
from broker.simulate.nitro import FakeNitroAuthority
from broker.simulate.snp import SnpKit
from broker.store import bindings
from hsm.jwe import Exposure

DEMO_KEY = "disk-key"
DEMO_KBS_PATH = "default/key/disk-key"
DEMO_ROOT_FILE = "demo-snp.pem"  # the broker names this root insecure-test-demo-snp
KMS_KEY = "enclave-data-key"
#: The demo policies: (the package's link, the file under policies/).
DEMO_POLICY = ("demo_policy.yaml", "insecure-demo-simulated-snp.yaml")
KMS_POLICY = ("demo_kms_policy.yaml", "insecure-demo-simulated-nitro.yaml")
NITRO_ROOT_FILE = "demo-nitro.pem"  # the broker names this root insecure-test-demo-nitro


def kit_dir(state_dir: Path) -> Path:
    return state_dir / "demo" / "snp"


def nitro_dir(state_dir: Path) -> Path:
    """The simulated Nitro PKI, where ``keybroker guest evidence --tee nitro`` looks for it."""
    return state_dir / "demo" / "nitro"


def prepare(settings: Settings) -> Settings:
    """Create the demo kits if needed; the settings to run the demo broker with."""
    folder = kit_dir(settings.state_dir)
    root_file = settings.state_dir / "demo" / DEMO_ROOT_FILE
    if not (folder / "kit.json").exists() or not root_file.exists():
        kit = SnpKit.generate()
        kit.save(folder)
        root_file.write_bytes(kit.ark.public_bytes(Encoding.PEM))
    nitro_root = settings.state_dir / "demo" / NITRO_ROOT_FILE
    if not nitro_root.exists():
        authority = FakeNitroAuthority.generate()
        authority.save(nitro_dir(settings.state_dir))
        nitro_root.write_bytes(authority.root.public_bytes(Encoding.PEM))
    roots = tuple(dict.fromkeys((*settings.insecure_test_roots, root_file, nitro_root)))
    return settings.with_overrides(insecure_test_roots=roots)


async def seed(settings: Settings) -> None:
    """Import the demo key, publish and bind the demo policy; idempotent."""
    runtime = await Runtime.start(settings, locate.location)
    try:
        admin = AdminService(runtime)
        who = Principal(actor="demo-seed", role=None)
        existing = {key["name"]: key for key in await admin.list_keys(who)}
        if DEMO_KEY not in existing:
            secret = f"keybroker demo disk key {secrets.token_hex(8)}\n".encode()
            existing[DEMO_KEY] = await admin.create_key(who, DEMO_KEY, secret, None)
        if existing[DEMO_KEY]["exposure"] != Exposure.BROKER_MEMORY:
            await admin.set_exposure(who, DEMO_KEY, Exposure.BROKER_MEMORY)
        if existing[DEMO_KEY]["kbs_path"] != DEMO_KBS_PATH:
            await admin.set_kbs_path(who, DEMO_KEY, DEMO_KBS_PATH)
        await _publish_and_bind(runtime, admin, who, DEMO_KEY, DEMO_POLICY)
        if KMS_KEY not in existing:
            existing[KMS_KEY] = await admin.create_key(who, KMS_KEY, None, 32)
        if existing[KMS_KEY]["exposure"] != Exposure.BROKER_MEMORY:
            await admin.set_exposure(who, KMS_KEY, Exposure.BROKER_MEMORY)
        await _publish_and_bind(runtime, admin, who, KMS_KEY, KMS_POLICY)
    finally:
        await runtime.stop()


async def _publish_and_bind(
    runtime: Runtime, admin: AdminService, who: Principal, key: str, shipped: tuple[str, str]
) -> None:
    """Publish a shipped demo policy ((package resource, file under policies/)) and bind
    ``key`` to it, unless it is bound."""
    resource, source = shipped
    text = resources.files("broker.cli").joinpath(resource).read_text()
    policy = load_policy_text(text, source=source)
    await admin.publish_policy(who, policy)
    if not await bindings.is_bound(runtime.db, key):
        await admin.bind_policy(who, key, policy.name, None, False)


def instructions(settings: Settings, tls: DemoTls | None = None) -> str:
    """What to run next, against the demo broker (over HTTPS with ``tls``)."""
    state = settings.state_dir
    if tls is None:
        url = f"http://{settings.host}:{settings.port}"
        trust = ""
        clevis_trust = ""
    else:
        url = f"https://localhost:{settings.port}"
        trust = f"--ca {tls.ca_file} "
        clevis_trust = f', "ca": "{tls.ca_file}"'
    return (
        "\n"
        "  keybroker is starting with a DEMO setup (a synthetic AMD root is trusted).\n"
        "  In another terminal, fetch the demo key as a simulated SEV-SNP guest:\n\n"
        f"    .venv/bin/keybroker guest fetch --url {url} {trust}--key {DEMO_KEY} --tee snp "
        f"--simulate --state-dir {state}\n\n"
        "  or as a simulated Azure-style CVM behind a paravisor, with swtpm as its vTPM:\n\n"
        f"    .venv/bin/keybroker guest fetch --url {url} {trust}--key {DEMO_KEY} --tee snp-vtpm "
        f"--simulate --state-dir {state}\n\n"
        "  or seal a secret to it with the clevis pin (docs/boot.md):\n\n"
        f'    PATH=.venv/bin:$PATH clevis encrypt keybroker \'{{"url": "{url}", '
        f'"key": "{DEMO_KEY}", "tee": "snp", "simulate": true, "state-dir": "{state}"'
        f"{clevis_trust}}}' <<< secret > secret.jwe\n"
        "    PATH=.venv/bin:$PATH clevis decrypt < secret.jwe\n\n"
        + (
            ""
            if tls is None
            else f"  The broker's TLS key pin (--pin-sha256): {tls.pin_sha256}\n\n"
        )
        + "  A Confidential Containers guest fetches it as kbs:///default/key/disk-key with\n"
        f"  kbs_url {url} (docs/kbs.md).\n\n"
        f"  An enclave application asks for {KMS_KEY} (alias/{KMS_KEY}) as from AWS KMS,\n"
        "  with the simulated Nitro enclave's attestation document as Recipient (docs/kms.md):\n\n"
        f"    .venv/bin/keybroker admin access-key create --name demo-app --state-dir {state}\n"
        "    openssl genpkey -algorithm RSA -out enclave.pem && "
        "openssl pkey -in enclave.pem -pubout -out enclave.pub.pem\n"
        "    .venv/bin/keybroker guest evidence --tee nitro --simulate --public-key "
        f"enclave.pub.pem --out enclave.doc --state-dir {state}\n\n"
        f"  and AWS_ENDPOINT_URL_KMS={url} with that access key in any AWS SDK.\n\n"
        "  Then read the audit record of that release:\n\n"
        f"    .venv/bin/keybroker audit tail --state-dir {state}\n\n"
        f"  or in the web console, {url}/console/ (docs/console.md), with a token from:\n\n"
        f"    .venv/bin/keybroker admin token create --role auditor --name me "
        f"--state-dir {state}\n"
    )
