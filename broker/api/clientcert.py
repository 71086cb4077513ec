"""Admin identity from a TLS client certificate (mutual TLS; docs/operations.md, "Admin
identity").

With ``tls_client_ca_file`` set, the listener asks every client for a certificate issued by
that CA (``tls_client_certificate``: ``required`` refuses the TLS handshake without one,
``optional`` lets guests without one in). The subject of a verified certificate is matched,
as RFC 4514 text, against ``admin_client_roles_file``, a TOML file::

    [[client]]
    subject = "CN=alice,OU=security,O=Example Corp"
    role = "key-custodian"

A matching certificate authenticates admin API requests as ``cert:<subject>`` with that
role, without a bearer token; a certificate that matches nothing authenticates nothing (a
guest's certificate is not an admin's). With ``admin_client_certificate_only``, admin
requests must come with a matching certificate, and bearer tokens are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from broker.errors import ConfigurationError
from broker.roles import Role
from broker.settings import Settings, read_toml

#: A subject as the audit trail records it (``cert:<subject>``): printable ASCII, since
#: letters of another script could pass for another's name, as for token names.
SUBJECT = re.compile(r"[ -~]{1,512}")
#: Where the protocol puts the verified subject, after the ASGI TLS extension's name.
SCOPE_KEY = "client_cert_name"


def subject_of(der: bytes | None) -> str | None:
    """The RFC 4514 subject of a verified client certificate (DER); None without one."""
    if not der:
        return None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def scope_subject(scope: Mapping[str, Any]) -> str | None:
    """The verified client certificate's subject a request came with, if any."""
    tls = scope.get("extensions", {}).get("tls")
    if not isinstance(tls, Mapping):
        return None
    subject = tls.get(SCOPE_KEY)
    return subject if isinstance(subject, str) else None


def load_client_roles(path: Path) -> dict[str, Role]:
    """``admin_client_roles_file``: each subject's role; a malformed file is a configuration
    error naming what is wrong (the broker does not start)."""
    document = read_toml(path, "admin_client_roles_file")
    unknown = set(document) - {"client"}
    if unknown:
        raise ConfigurationError(f"{path}: unknown tables {', '.join(sorted(unknown))}")
    roles: dict[str, Role] = {}
    for index, entry in enumerate(document.get("client", [])):
        where = f"{path}: client {index + 1}"
        if not isinstance(entry, dict) or set(entry) != {"subject", "role"}:
            raise ConfigurationError(f"{where} must have exactly subject and role")
        subject, role = entry["subject"], entry["role"]
        if not isinstance(subject, str) or not SUBJECT.fullmatch(subject):
            raise ConfigurationError(f"{where}: subject must be 1-512 printable ASCII characters")
        if role not in {r.value for r in Role}:
            known = ", ".join(r.value for r in Role)
            raise ConfigurationError(f"{where}: role {role!r} is not one of {known}")
        if subject in roles:
            raise ConfigurationError(f"{where}: subject {subject} is listed twice")
        roles[subject] = Role(role)
    return roles


@dataclass(frozen=True, slots=True)
class ClientRoles:
    """The admin roles client certificates stand for, as the settings give them."""

    subjects: Mapping[str, Role]
    only: bool
    """``admin_client_certificate_only``: bearer admin tokens are refused."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientRoles:
        path = settings.admin_client_roles_file
        subjects = {} if path is None else load_client_roles(path)
        return cls(subjects, settings.admin_client_certificate_only)
