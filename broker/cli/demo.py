"""The `make run` demo: a simulated SNP guest (and its vTPM twin, ``--tee snp-vtpm``), a key
it may fetch, and the policy that says so.

``prepare`` creates a synthetic AMD chain under ``<state>/demo/snp`` (once) and returns
settings that trust its root through ``insecure_test_roots`` (the broker announces that in
its log). ``seed`` imports the demo key ``disk-key`` (a readable secret, so a newcomer can see
what was released), publishes ``policies/insecure-demo-simulated-snp.yaml`` and binds them,
and lets Confidential Containers guests fetch it too: exposure ``broker-memory`` and KBS path
``default/key/disk-key`` (docs/kbs.md). Nothing here is ever done outside ``keybroker dev
run --demo``; no module of the broker imports it but the command line's.
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
from broker.simulate.snp import SnpKit
from broker.store import bindings
from hsm.jwe import Exposure

DEMO_KEY = "disk-key"
DEMO_KBS_PATH = "default/key/disk-key"
DEMO_ROOT_FILE = "demo-snp.pem"  # the broker names this root insecure-test-demo-snp


def kit_dir(state_dir: Path) -> Path:
    return state_dir / "demo" / "snp"


def prepare(settings: Settings) -> Settings:
    """Create the demo kit if needed; the settings to run the demo broker with."""
    folder = kit_dir(settings.state_dir)
    root_file = settings.state_dir / "demo" / DEMO_ROOT_FILE
    if not (folder / "kit.json").exists() or not root_file.exists():
        kit = SnpKit.generate()
        kit.save(folder)
        root_file.write_bytes(kit.ark.public_bytes(Encoding.PEM))
    roots = tuple(dict.fromkeys((*settings.insecure_test_roots, root_file)))
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
        text = resources.files("broker.cli").joinpath("demo_policy.yaml").read_text()
        policy = load_policy_text(text, source="insecure-demo-simulated-snp.yaml")
        await admin.publish_policy(who, policy)
        if not await bindings.is_bound(runtime.db, DEMO_KEY):
            await admin.bind_policy(who, DEMO_KEY, policy.name, None, False)
    finally:
        await runtime.stop()


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
        "  Then read the audit record of that release:\n\n"
        f"    .venv/bin/keybroker audit tail --state-dir {state}\n"
    )
