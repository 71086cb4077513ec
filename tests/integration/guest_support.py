"""A broker for the guest side's tests: the demo's key and policy (what ``make run`` seeds),
keys bound to a policy that admits no simulated guest, served over HTTPS with the demo CA,
on a real PostgreSQL database and the session's SoftHSM token."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from keybroker_guest.jws import BrokerKey

from broker.admin.service import AdminService, AuditQuery
from broker.cli import demo, locate
from broker.cli.admin import describe_audit
from broker.localstate.democa import DemoTls, demo_tls
from broker.localstate.softhsm import LocalSoftHsm
from broker.policy.loader import load_policy_text
from broker.redact import Secret
from broker.roles import Principal
from broker.runtime import Runtime
from broker.settings import Settings
from tests.integration.server import running_broker

DEMO_POLICY = "insecure-demo-simulated-snp"
DENYING_POLICY = "insecure-test-another-image"
#: The demo guest's launch measurement, which the denying policy replaces.
DEMO_MEASUREMENT_HEX = (
    "5fb0c1075b5047ab36a84716c9fc15201550b9f999d088a97ce3ebc1e4a65e6c"
    "b87e1e50a19a9b7a4530633986d41b28"
)
WHO = Principal(actor="guest-tests", role=None)


def denying_policy_text() -> str:
    """The demo policy, admitting another image than the demo guest's."""
    text = resources.files("broker.cli").joinpath("demo_policy.yaml").read_text()
    assert DEMO_MEASUREMENT_HEX in text
    return text.replace(DEMO_POLICY, DENYING_POLICY).replace(DEMO_MEASUREMENT_HEX, "ab" * 48)


async def seed(settings: Settings, allowed: list[str], denied: list[str]) -> None:
    """The demo (key and policy), then 32-byte keys ``allowed`` (bound to the demo policy)
    and ``denied`` (bound to the denying policy)."""
    await demo.seed(settings)
    runtime = await Runtime.start(settings, locate.location)
    try:
        admin = AdminService(runtime)
        policy = load_policy_text(denying_policy_text(), source=f"{DENYING_POLICY}.yaml")
        await admin.publish_policy(WHO, policy)
        for name in allowed + denied:
            await admin.create_key(WHO, name, None, 32)
        for name in allowed:
            await admin.bind_policy(WHO, name, DEMO_POLICY, None, False)
        for name in denied:
            await admin.bind_policy(WHO, name, DENYING_POLICY, None, False)
    finally:
        await runtime.stop()


async def rebind(settings: Settings, key: str, policy: str) -> None:
    runtime = await Runtime.start(settings, locate.location)
    try:
        await AdminService(runtime).bind_policy(WHO, key, policy, None, False)
    finally:
        await runtime.stop()


@dataclass(frozen=True)
class GuestBroker:
    settings: Settings
    base: str
    """``https://127.0.0.1:<port>``."""
    tls: DemoTls
    signing_key: BrokerKey
    """The key the broker signs releases with (from its /v1/jwks, over verified TLS)."""


def broker_settings(state_dir: Path, dsn: str, softhsm: LocalSoftHsm) -> Settings:
    """The demo's settings (its test root trusted) on database ``dsn``, serving HTTPS."""
    tls = demo_tls(state_dir)
    settings = Settings(
        state_dir=state_dir,
        database_url=Secret(dsn),
        token_label=softhsm.token_label,
        user_pin_file=softhsm.user_pin_file,
        log_format="json",
        tls_cert_file=tls.cert_file,
        tls_key_file=tls.key_file,
    )
    return demo.prepare(settings)


@contextmanager
def guest_broker(settings: Settings) -> Iterator[GuestBroker]:
    tls = demo_tls(settings.state_dir)
    with running_broker(settings) as base:
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        with urllib.request.urlopen(f"{base}/v1/jwks", context=context) as answer:  # noqa: S310
            (jwk,) = json.load(answer)["keys"]
        yield GuestBroker(settings, base, tls, BrokerKey.from_jwk(jwk))


async def add_version(settings: Settings, key: str) -> None:
    runtime = await Runtime.start(settings, locate.location)
    try:
        await AdminService(runtime).create_key(WHO, key, None, 32, new_version=True)
    finally:
        await runtime.stop()


async def audit_lines(settings: Settings, limit: int) -> list[str]:
    """The last ``limit`` audit records as ``keybroker audit tail`` prints them."""
    runtime = await Runtime.start(settings, locate.location)
    try:
        records = await AdminService(runtime).audit_records(
            WHO, AuditQuery(), limit, newest_first=True
        )
    finally:
        await runtime.stop()
    return [describe_audit(entry) for entry in reversed(records)]
