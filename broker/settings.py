"""One frozen settings object, read once from a TOML file and ``KEYBROKER_*`` variables.

Precedence: environment over file over defaults. Unknown keys in the file are errors (a typo
in a security setting must not silently fall back to a default). Every option that weakens
security starts with ``insecure_`` and is announced in the log at start. Secret values (the
database URL, which may embed a password, and the PIN) are :class:`~broker.redact.Secret`.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from broker.errors import ConfigurationError
from broker.redact import Secret

ENV_PREFIX = "KEYBROKER_"
# Session objects per session: far above any hot set, well below what exhausts a token.
MAX_HSM_SECRET_CACHE_SIZE = 65536
# Release contexts per worker: about 1 KB each plus the wrapped blob (up to 8 KB): at most
# about 9 GB at this bound, about 4 MB at the default for small secrets.
MAX_RELEASE_CONTEXT_CACHE_SIZE = 1_048_576
# Addresses audited apart per worker and minute: each is at most an audit record a minute
# and under 1 KB of counts until it is written (about 40 MB a window at this bound).
MAX_UNAUTHENTICATED_AUDIT_SOURCES = 65536
# KBS sessions per worker: an attested one holds its token (a few KB of claims).
MAX_KBS_SESSIONS = 262_144
# Connections per worker: each is a file descriptor (see ``keybroker serve``'s open-file limit).
MAX_CONNECTIONS = 1_048_576


@dataclass(frozen=True)
class Settings:
    state_dir: Path = Path(".keybroker")
    """Local PostgreSQL cluster, SoftHSM token and demo material (``make run``, tests)."""
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1

    tls_cert_file: Path | None = None
    """PEM certificate (chain) to serve HTTPS with, beside ``tls_key_file``; unset: HTTP."""
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    """PEM CA certificates: with it, every client must present a certificate they issued
    (mutual TLS); needs ``tls_cert_file``."""
    tls_client_optional: bool = False
    """With ``tls_client_ca_file``: a client may connect without a certificate (guests), but
    one it presents must be one the CA issued; unset, every client must present one."""
    admin_client_roles_file: Path | None = None
    """TOML file of client certificate subjects and the admin role each stands for
    (``broker/api/clientcert.py``; docs/operations.md, "Admin identity"); needs
    ``tls_client_ca_file``."""
    admin_client_certificate_only: bool = False
    """Admin requests must come with a certificate ``admin_client_roles_file`` lists; bearer
    admin tokens are then refused."""

    database_url: Secret | None = None
    """An existing PostgreSQL server; unset means the cluster under ``state_dir``."""
    db_pool_min: int = 2
    db_pool_max: int = 10

    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    token_label: str | None = None
    """Unset means the SoftHSM token under ``state_dir``."""
    user_pin_file: Path | None = None
    hsm_threads: int = 4
    hsm_secret_cache_size: int = 256
    """Unwrapped secrets each PKCS#11 session keeps as HSM session objects for the next
    release of the same key (least recently used out; 0 unwraps on every release)."""
    hsm_secret_cache_seconds: int = 300
    """Longest use of a cached unwrapped secret, from its unwrap; an expired one is destroyed
    when its session is next used (a release or a readiness probe on that thread)."""

    release_context_cache_size: int = 4096
    """Release contexts (key version, state, wrapped blob, bound policy) each worker keeps for
    the next release of the same key (least recently used out), so that a release runs one
    statement: its audit record is appended only if the context is still the key's current
    one, else the release reads it afresh and decides again. 0 reads it on every release."""

    kbs_sessions: int = 4096
    """Trustee KBS cookie sessions each worker keeps (least recently used out; each lives
    as long as its nonce, then its token). A guest whose session this process does not hold
    gets 401 and redoes the handshake; its Bearer token works on any worker (docs/kbs.md)."""

    kms_path: str = "/"
    """Where the KMS-compatible endpoint answers (docs/kms.md): the SDKs post to the path of
    their endpoint URL, ``/`` for ``http://host:port``."""
    kms_clock_skew_seconds: int = 300
    """Largest difference between a SigV4 request's time and the broker's clock; a signature
    is accepted once within it. Also the largest age of a Recipient's attestation document."""
    kms_account_id: str = "000000000000"
    """The account the key ARNs of KMS answers name (SDKs read ARNs, never check them)."""

    challenge_ttl_seconds: int = 300
    token_ttl_seconds: int = 300
    console_session_seconds: int = 3600
    """How long a console login lasts (docs/console.md); its admin token is checked again on
    every request, so a revoked or expired token ends it sooner."""
    max_request_bytes: int = 1_048_576
    rate_limit_per_second: int = 50
    """Requests per second per client address, on every path but the health, readiness and
    metrics probes (0 disables); burst is twice that."""

    # Connection limits, per worker process (broker/api/guard.py, docs/operations.md).
    max_connections: int = 2048
    """Open connections; a request on one beyond it is answered 503."""
    max_open_requests_per_client: int = 8
    """Unanswered requests one client address may have, each counted from its first byte
    (0: no limit); beyond it, 429."""
    max_request_bytes_in_flight: int = 33_554_432
    """Request bytes (heads and bodies) held for unanswered requests; the request whose
    bytes pass it is answered 503."""
    max_request_head_bytes: int = 262_144
    """Longest request line and headers; beyond it, 431."""
    request_head_timeout_seconds: int = 10
    """Time for a request's line and headers, from the connection's opening (its first
    request) or the request's first byte; then 408 and the connection closes."""
    request_body_timeout_seconds: int = 30
    """Time for a request's whole body, from its head; then 408 and the connection closes."""
    keep_alive_timeout_seconds: int = 5
    """How long an idle connection is kept between requests."""

    unauthenticated_audit_sources: int = 256
    """Source addresses each worker audits apart per minute among requests refused before
    anything the broker issued was recognised in them (bad nonce MAC, token signature); any
    further address is counted in one "other" record (``broker/release/unauthenticated.py``)."""

    collateral_fetch: bool = True
    """Fetch collateral missing from the store from AMD KDS and Intel PCS (off: air-gapped,
    only what ``keybroker collateral import`` stored is used)."""
    amd_kds_url: str = "https://kdsintf.amd.com"
    intel_pcs_url: str = "https://api.trustedservices.intel.com"
    """Intel PCS, or a PCCS serving the same ``/sgx|tdx/certification/v4/`` paths."""
    intel_root_crl_url: str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
    """The Intel SGX Root CA CRL (from a PCCS: ``<pccs>/sgx/certification/v4/rootcacrl``)."""
    collateral_timeout_seconds: int = 10
    """Timeout of each request to a collateral service."""

    log_format: str = "auto"
    """``json``, ``console``, or ``auto`` (console on a terminal, JSON otherwise)."""
    log_level: str = "info"

    insecure_test_roots: tuple[Path, ...] = ()
    """PEM files of test roots trusted besides the pinned vendor roots (demo, tests)."""

    def insecure_options(self) -> dict[str, Any]:
        """Every ``insecure_`` option that is switched on, for the start-up warning."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name.startswith("insecure_") and getattr(self, f.name)
        }

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or (
        Path(environ[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in environ else None
    )
    if path is not None:
        values.update(read_toml(path, "settings file"))
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigurationError(f"unknown settings: {', '.join(unknown)}")
    for name in known:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = environ[env_name]
    hints = typing.get_type_hints(Settings)
    converted = {name: _convert(name, hints[name], value) for name, value in values.items()}
    settings = Settings(**converted)
    validate(settings)
    return settings


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML document at ``path``; ``ConfigurationError`` naming ``what`` and the fault."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{what} {path}: {exc}") from None


def _convert(name: str, hint: Any, value: Any) -> Any:
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if optional and (value is None or value == ""):
        return None
    try:
        if hint is bool:
            return _to_bool(value)
        if hint is int:
            if isinstance(value, bool):
                raise ValueError("boolean where a number is needed")
            return int(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError("expected text")
            return value
        if hint is Path:
            return Path(str(value))
        if hint is Secret:
            return Secret(str(value))
        if typing.get_origin(hint) is tuple:
            items = value.split(os.pathsep) if isinstance(value, str) else list(value)
            return tuple(Path(str(item)) for item in items if str(item))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"setting {name}: {exc}") from None
    raise ConfigurationError(f"setting {name}: unsupported type {hint}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def validate(settings: Settings) -> None:
    """``ConfigurationError`` for the first setting out of bounds or out of step."""
    if not 1 <= settings.port <= 65535:
        raise ConfigurationError(f"port {settings.port} outside 1..65535")
    _check_tls(settings)
    if settings.log_format not in {"auto", "json", "console"}:
        raise ConfigurationError(f"log_format {settings.log_format!r} not auto/json/console")
    if not 30 <= settings.challenge_ttl_seconds <= 3600:
        raise ConfigurationError("challenge_ttl_seconds must be within 30..3600")
    if not 30 <= settings.token_ttl_seconds <= 3600:
        raise ConfigurationError("token_ttl_seconds must be within 30..3600")
    _check_within(settings, "console_session_seconds", 60, 43200)
    if settings.rate_limit_per_second < 0:
        raise ConfigurationError("rate_limit_per_second must be >= 0")
    _validate_connection_limits(settings)
    if settings.hsm_threads < 0 or settings.workers < 1:
        raise ConfigurationError("hsm_threads must be at least 0 and workers at least 1")
    if not 0 <= settings.hsm_secret_cache_size <= MAX_HSM_SECRET_CACHE_SIZE:
        raise ConfigurationError(
            f"hsm_secret_cache_size must be within 0..{MAX_HSM_SECRET_CACHE_SIZE}"
        )
    if not 1 <= settings.hsm_secret_cache_seconds <= 86400:
        raise ConfigurationError("hsm_secret_cache_seconds must be within 1..86400")
    if not 0 <= settings.release_context_cache_size <= MAX_RELEASE_CONTEXT_CACHE_SIZE:
        raise ConfigurationError(
            f"release_context_cache_size must be within 0..{MAX_RELEASE_CONTEXT_CACHE_SIZE}"
        )
    _check_within(settings, "unauthenticated_audit_sources", 0, MAX_UNAUTHENTICATED_AUDIT_SOURCES)
    _check_within(settings, "kbs_sessions", 1, MAX_KBS_SESSIONS)
    _check_kms(settings)
    if settings.db_pool_min < 1 or settings.db_pool_max < settings.db_pool_min:
        raise ConfigurationError("db_pool_min must be >= 1 and <= db_pool_max")
    if not 1 <= settings.collateral_timeout_seconds <= 300:
        raise ConfigurationError("collateral_timeout_seconds must be within 1..300")
    for name in ("amd_kds_url", "intel_pcs_url", "intel_root_crl_url"):
        _check_url(name, getattr(settings, name))


def _check_kms(settings: Settings) -> None:
    _check_within(settings, "kms_clock_skew_seconds", 30, 900)
    if not _KMS_PATH.fullmatch(settings.kms_path) or settings.kms_path.startswith(_RESERVED):
        raise ConfigurationError(
            "kms_path must be / or /segment[/segment...] of a-z 0-9 . _ - outside the broker's "
            "own paths (/v1, /kbs, /healthz, /readyz, /metrics)"
        )
    if not re.fullmatch(r"[0-9]{12}", settings.kms_account_id):
        raise ConfigurationError("kms_account_id must be 12 digits")


_KMS_PATH = re.compile(r"/|(/[a-z0-9._-]+)+")
_RESERVED = ("/v1", "/kbs", "/healthz", "/readyz", "/metrics")


def _check_tls(settings: Settings) -> None:
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise ConfigurationError("tls_cert_file and tls_key_file go together")
    if settings.tls_client_ca_file is not None and settings.tls_cert_file is None:
        raise ConfigurationError("tls_client_ca_file needs tls_cert_file and tls_key_file")
    if settings.tls_client_optional and settings.tls_client_ca_file is None:
        raise ConfigurationError("tls_client_optional needs tls_client_ca_file")
    if settings.admin_client_roles_file is not None and settings.tls_client_ca_file is None:
        raise ConfigurationError("admin_client_roles_file needs tls_client_ca_file")
    if settings.admin_client_certificate_only and settings.admin_client_roles_file is None:
        raise ConfigurationError("admin_client_certificate_only needs admin_client_roles_file")


def _check_within(settings: Settings, name: str, low: int, high: int) -> None:
    if not low <= getattr(settings, name) <= high:
        raise ConfigurationError(f"{name} must be within {low}..{high}")


def _validate_connection_limits(settings: Settings) -> None:
    _check_within(settings, "max_connections", 1, MAX_CONNECTIONS)
    if settings.max_open_requests_per_client < 0:
        raise ConfigurationError("max_open_requests_per_client must be >= 0")
    if settings.max_request_bytes_in_flight < settings.max_request_bytes:
        # Else a request of the largest accepted size could never be held.
        raise ConfigurationError("max_request_bytes_in_flight must be >= max_request_bytes")
    if not 1024 <= settings.max_request_head_bytes <= settings.max_request_bytes_in_flight:
        raise ConfigurationError(
            "max_request_head_bytes must be within 1024..max_request_bytes_in_flight"
        )
    for name in (
        "request_head_timeout_seconds",
        "request_body_timeout_seconds",
        "keep_alive_timeout_seconds",
    ):
        _check_within(settings, name, 1, 3600)


def _check_url(name: str, url: str) -> None:
    parsed = urlsplit(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise ConfigurationError(f"{name} {url!r} is not an http(s) URL with a host")
