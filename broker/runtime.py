"""What a running broker holds: settings, the database pool, HSM custody, trusted test roots.

``Runtime.start`` is told where PostgreSQL and the token are (:data:`Locate`; by default
:func:`configured_location`, what the settings name and nothing else), connects, applies
migrations and makes the token ready (first KEK, signing key and nonce key, OAEP probe, the
nonce MAC key derived), holding the database's lock on the token's objects while it does,
so that replicas starting together on a fresh token do not each create their own. It raises
rather than starting half-configured. The command line alone falls back to the local cluster
and token under the state directory (``broker/cli/locate.py``), so nothing here knows the
development set-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.errors import ConfigurationError
from broker.evidence.trust import TrustedRoot, insecure_root, load_certificates
from broker.hsmcalls import hsm_errors
from broker.logs import get_logger
from broker.privatefiles import read_secret
from broker.redact import Secret
from broker.settings import Settings
from broker.store import kek
from broker.store.database import Database
from broker.store.migrate import migrate
from hsm.custody import Custody
from hsm.jwe import RSA_OAEP_256
from hsm.secretcache import SecretCacheLimits

log = get_logger("keybroker.runtime")


@dataclass(frozen=True)
class HsmLocation:
    module: str
    token_label: str
    user_pin: Secret


@dataclass(frozen=True)
class Location:
    """Where a broker's database and token are."""

    database_dsn: Secret
    hsm: HsmLocation


Locate = Callable[[Settings], Location]
"""Finds the database and the token for some settings, or raises ``ConfigurationError``."""


def configured_hsm(settings: Settings) -> HsmLocation | None:
    """The token the settings name (``token_label`` with ``user_pin_file``); None if none."""
    if settings.token_label is None:
        return None
    if settings.user_pin_file is None:
        raise ConfigurationError("token_label is set but user_pin_file is not")
    return HsmLocation(
        settings.pkcs11_module, settings.token_label, read_secret(settings.user_pin_file)
    )


def configured_location(settings: Settings) -> Location:
    """The database and the token the settings name; a broker given neither looks nowhere."""
    hsm = configured_hsm(settings)
    if hsm is None:
        raise ConfigurationError("no token_label set; set KEYBROKER_TOKEN_LABEL")
    if settings.database_url is None:
        raise ConfigurationError("no database_url set; set KEYBROKER_DATABASE_URL")
    return Location(settings.database_url, hsm)


def secret_cache_limits(settings: Settings) -> SecretCacheLimits:
    return SecretCacheLimits(settings.hsm_secret_cache_size, settings.hsm_secret_cache_seconds)


def open_custody(location: HsmLocation, settings: Settings) -> Custody:
    """Custody on the token at ``location``, ready (``Custody.ensure_ready``): its objects
    created if absent and refused if duplicated, the OAEP hash probed, the nonce key derived."""
    with hsm_errors():
        custody = Custody.open(
            location.module,
            location.token_label,
            location.user_pin,
            settings.hsm_threads,
            secret_cache_limits(settings),
        )
        try:
            custody.ensure_ready()
        except BaseException:
            custody.close()
            raise
    return custody


async def open_custody_serialised(
    db: Database, location: HsmLocation, settings: Settings
) -> Custody:
    """:func:`open_custody` while holding the lock on the token's objects (the one KEK
    rotation takes, ``broker/store/kek.py``): of processes starting together on a fresh token
    (replicas, or supervisors of workers), one creates its objects and the others, waiting
    for it, find them; unserialised, each could create its own, leaving two under one label,
    which every process refuses."""
    async with db.transaction() as conn:
        await kek.lock_token_objects(conn)
        return open_custody(location, settings)


def trusted_test_roots(paths: tuple[Path, ...]) -> tuple[TrustedRoot, ...]:
    """Each file's certificates, named ``insecure-test-<file stem>`` (``-<n>`` after the first)."""
    roots = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"insecure_test_roots: cannot read {path}: {exc.strerror}"
            ) from None
        for number, cert in enumerate(load_certificates(data)):
            label = path.stem if number == 0 else f"{path.stem}-{number}"
            roots.append(insecure_root(cert, label))
    return tuple(roots)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    custody: Custody
    test_roots: tuple[TrustedRoot, ...]

    @classmethod
    async def start(cls, settings: Settings, locate: Locate = configured_location) -> Runtime:
        insecure = settings.insecure_options()
        if insecure:
            log.warning(
                "insecure_options_enabled", options={k: str(v) for k, v in insecure.items()}
            )
        test_roots = trusted_test_roots(settings.insecure_test_roots)
        location = locate(settings)
        db = await Database.connect(
            location.database_dsn.reveal(), settings.db_pool_min, settings.db_pool_max
        )
        try:
            async with db.connection() as conn:
                applied = await migrate(conn)
            if applied:
                log.info("migrations_applied", versions=[m.version for m in applied])
            custody = await open_custody_serialised(db, location.hsm, settings)
        except BaseException:
            await db.close()
            raise
        log.info(
            "runtime_ready",
            token_label=location.hsm.token_label,
            oaep_hash=custody.oaep_hash.value,
            hsm_threads=settings.hsm_threads,
            hsm_secret_cache_size=settings.hsm_secret_cache_size,
            # What keeps a KBS answer (JWE) from being made inside the token: docs/kbs.md.
            kbs_jwe_not_in_token=custody.jwe_support.missing(RSA_OAEP_256),
        )
        return cls(settings, db, custody, test_roots)

    async def stop(self) -> None:
        await self.db.close()
        self.custody.close()

    async def check_hsm(self) -> None:
        """Raise ``HsmUnavailable`` unless the token answers and holds a KEK (``/readyz``)."""
        with hsm_errors():
            await self.custody.check()
