"""Who may do what: the admin roles, and the principal an admin operation runs as.

The vocabulary the admin API, the CLI, the admin service and the token store share; it
imports nothing of the broker (docs/api.md, "The admin API", lists what each role may do).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    KEY_CUSTODIAN = "key-custodian"
    POLICY_AUTHOR = "policy-author"
    AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling an admin operation; ``actor`` is what the audit trail records."""

    actor: str
    role: Role | None
    """None for the local CLI, which holds the database and HSM credentials anyway."""
    token_id: str | None = None
    """The admin token it authenticated with; None for the local CLI."""
    expires_at: datetime | None = None
    """When that token expires."""
