"""What a running broker holds: settings, the database pool, HSM custody, trusted test roots.

``Runtime.start`` resolves where PostgreSQL and the token are (an explicit URL and module, or
the ones under the state directory), connects, applies migrations and makes the token ready
(first KEK, signing key and nonce key, OAEP probe, the nonce MAC key derived). It raises
rather than starting half-configured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from broker.errors import ConfigurationError
from broker.evidence.trust import TrustedRoot, insecure_root, load_certificates
from broker.hsmcalls import hsm_errors
from broker.localstate.files import read_secret
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.logs import get_logger
from broker.redact import Secret
from broker.settings import Settings
from broker.store.database import Database
from broker.store.migrate import migrate
from hsm.custody import Custody
from hsm.secretcache import SecretCacheLimits

log = get_logger("keybroker.runtime")


@dataclass(frozen=True)
class HsmLocation:
    module: str
    token_label: str
    user_pin: Secret


def database_dsn(settings: Settings) -> Secret:
    if settings.database_url is not None:
        return settings.database_url
    local = LocalPostgres(settings.state_dir)
    if not local.password_file.exists():
        raise ConfigurationError(
            f"no database_url set and no local cluster under {settings.state_dir}; "
            "run `keybroker dev up` or set KEYBROKER_DATABASE_URL"
        )
    return Secret(local.dsn())


def hsm_location(settings: Settings) -> HsmLocation:
    if settings.token_label is not None:
        if settings.user_pin_file is None:
            raise ConfigurationError("token_label is set but user_pin_file is not")
        return HsmLocation(
            settings.pkcs11_module, settings.token_label, read_secret(settings.user_pin_file)
        )
    local = LocalSoftHsm(settings.state_dir, settings.pkcs11_module)
    if not local.label_file.exists():
        raise ConfigurationError(
            f"no token_label set and no local SoftHSM token under {settings.state_dir}; "
            "run `keybroker dev up` or set KEYBROKER_TOKEN_LABEL"
        )
    # SoftHSM reads its configuration when the module initialises, from this variable.
    os.environ.update(local.environment())
    return HsmLocation(local.module_path, local.token_label, local.user_pin)


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
    async def start(cls, settings: Settings) -> Runtime:
        insecure = settings.insecure_options()
        if insecure:
            log.warning(
                "insecure_options_enabled", options={k: str(v) for k, v in insecure.items()}
            )
        test_roots = trusted_test_roots(settings.insecure_test_roots)
        location = hsm_location(settings)
        db = await Database.connect(
            database_dsn(settings).reveal(), settings.db_pool_min, settings.db_pool_max
        )
        try:
            async with db.connection() as conn:
                applied = await migrate(conn)
            if applied:
                log.info("migrations_applied", versions=[m.version for m in applied])
            custody = open_custody(location, settings)
        except BaseException:
            await db.close()
            raise
        log.info(
            "runtime_ready",
            token_label=location.token_label,
            oaep_hash=custody.oaep_hash.value,
            hsm_threads=settings.hsm_threads,
            hsm_secret_cache_size=settings.hsm_secret_cache_size,
        )
        return cls(settings, db, custody, test_roots)

    async def stop(self) -> None:
        await self.db.close()
        self.custody.close()

    async def check_hsm(self) -> None:
        """Raise ``HsmUnavailable`` unless the token answers and holds a KEK (``/readyz``)."""
        with hsm_errors():
            await self.custody.check()
