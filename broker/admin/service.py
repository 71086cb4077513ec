"""Operations of key custodians, policy authors, auditors and admins.

The HTTP admin API and the CLI call these same functions. Each checks the caller's role
(separation of duties: a custodian cannot write policies, an author cannot import keys, an
auditor only reads, an admin manages tokens) and appends an audit record of what it did.
The local CLI acts with every role: whoever runs it holds the database and HSM credentials.

Over the API an admin creates only admin and auditor tokens (:data:`API_MINTED_ROLES`):
were it to create a key-custodian or policy-author token, one admin token would be every
duty at once. Those tokens are created with the CLI, by whoever holds the database and HSM
credentials, who could act with every role anyway (docs/architecture.md §9).
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from broker.errors import BadRequest, Conflict, Forbidden, PolicyError
from broker.hsmcalls import hsm_errors
from broker.names import checked_name, checked_version, parse_kbs_path
from broker.policy.diff import diff, summary
from broker.policy.loader import load_policy_text
from broker.policy.model import Duration, Policy
from broker.policy.replay import Replay
from broker.release.policies import stored_form
from broker.roles import Principal, Role
from broker.runtime import Runtime
from broker.store import access_keys, admin_tokens, audit, bindings, kek, keys, policies
from broker.store.audit import AuditRecord, ChainReport, verify_chain
from broker.store.database import Database
from broker.timeutil import utcnow
from hsm.custody import WrappedSecret
from hsm.jwe import Exposure

# Printable ASCII: the name is part of the actor in every audit record of the token
# (``token:<id>:<name>``), where letters of another script could pass for another's name.
TOKEN_NAME = re.compile(r"[ -~]{1,128}")

ACCESS_KEY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
ACCESS_KEY_ID = re.compile(r"KB[A-Z2-7]{18}")

READ_KEYS = (Role.KEY_CUSTODIAN, Role.POLICY_AUTHOR, Role.AUDITOR, Role.ADMIN)
#: Who may replay a draft over the claims of past decisions: its authors, and auditors.
REPLAY_POLICIES = (Role.POLICY_AUTHOR, Role.AUDITOR)
#: How far back a replay looks by default.
DEFAULT_REPLAY_WINDOW = "30d"
#: A replay also reads the attestations this long before its window's token lifetime, for
#: the clock skew between replicas (docs/architecture.md §9, "Nonces": 10 s).
REPLAY_CLOCK_MARGIN = timedelta(seconds=60)
_WINDOW = re.compile(r"[1-9][0-9]{0,8}[smhd]")
READ_POLICIES = (Role.POLICY_AUTHOR, Role.AUDITOR, Role.ADMIN, Role.KEY_CUSTODIAN)
#: The roles whose tokens an admin may create over the API; the others need the CLI.
API_MINTED_ROLES = frozenset({Role.ADMIN, Role.AUDITOR})


def require(principal: Principal, *roles: Role) -> None:
    if principal.role is None or principal.role in roles:
        return
    wanted = ", ".join(role.value for role in roles)
    raise Forbidden(f"role {principal.role.value} may not do this (needs {wanted})")


async def replay_history(db: Database, replay: Replay) -> dict[str, Any]:
    """Feed ``replay`` the audit trail from its window's start, less a token's lifetime and
    :data:`REPLAY_CLOCK_MARGIN` (the attestations whose tokens its releases used), and
    report. Each batch is decided in a worker thread, so an event loop keeps serving."""

    def decide(batch: list[audit.Stored]) -> None:
        for row in batch:
            replay.feed(
                at=row.at,
                kind=row.kind,
                decision=row.decision,
                request_id=row.request_id,
                key_name=row.key_name,
                body=orjson.loads(row.record),
            )

    start = replay.since - replay.lifetime - REPLAY_CLOCK_MARGIN
    async for batch in audit.history(db, start, replay.key):
        await asyncio.to_thread(decide, batch)
    return replay.report()


class AdminService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.db
        self.custody = runtime.custody

    async def authenticate(self, token: str) -> Principal:
        """The principal an admin bearer token stands for; ``TokenInvalid`` otherwise."""
        return await admin_tokens.authenticate(self.db, token)

    async def _audit(
        self, principal: Principal, action: str, key_name: str | None, details: dict[str, Any]
    ) -> None:
        async with self.db.transaction() as conn:
            await audit.append(
                conn,
                AuditRecord(
                    utcnow(),
                    "admin",
                    "ok",
                    None,
                    key_name,
                    {"action": action, "actor": principal.actor, **details},
                ),
            )

    # --- keys ------------------------------------------------------------------------------

    async def create_key(
        self,
        principal: Principal,
        name: str,
        secret: bytes | None,
        generate_length: int | None,
        new_version: bool = False,
    ) -> dict[str, Any]:
        """Import ``secret`` (sealed at once) or generate one in the HSM, as version 1 of a
        new key, or as the next version of an existing one when ``new_version``."""
        require(principal, Role.KEY_CUSTODIAN)
        checked_name(name, "key")
        if (secret is None) == (generate_length is None):
            raise BadRequest("give exactly one of a secret to import or a length to generate")
        existing = await keys.find_latest(self.db, name)
        if new_version and existing is None:
            raise keys.not_found(name)
        if not new_version and existing is not None:
            raise Conflict(f"key {name} exists; rotate it to add a version")
        wrapped: WrappedSecret
        with hsm_errors():
            if secret is not None:
                wrapped = await asyncio.to_thread(self.custody.import_secret, secret)
            else:
                length = generate_length or 0
                wrapped = await asyncio.to_thread(self.custody.generate_secret, length)
        async with self.db.transaction() as conn:
            info = await keys.insert_key_version(conn, name, wrapped)
        await self._audit(
            principal,
            "key.rotate" if new_version else "key.create",
            name,
            {
                "version": info.version,
                "kek_label": info.kek_label,
                "secret_length": info.secret_length,
                "origin": "imported" if secret is not None else "generated-in-hsm",
            },
        )
        return info.to_json()

    async def set_key_state(self, principal: Principal, name: str, state: str) -> dict[str, Any]:
        require(principal, Role.KEY_CUSTODIAN)
        checked_name(name, "key")
        await keys.set_state(self.db, name, state)
        await self._audit(
            principal, f"key.{'enable' if state == 'active' else 'disable'}", name, {}
        )
        return (await keys.latest_key(self.db, name)).to_json()

    async def set_exposure(self, principal: Principal, name: str, exposure: str) -> dict[str, Any]:
        """Say where the key's secret may be while it is released (``hsm/jwe.py``):
        ``hsm-only`` (never outside the token: the native release only) or
        ``broker-memory`` (also the KBS answer, made in broker memory)."""
        require(principal, Role.KEY_CUSTODIAN)
        checked_name(name, "key")
        try:
            setting = Exposure(exposure)
        except ValueError:
            known = ", ".join(e.value for e in Exposure)
            raise BadRequest(f"exposure {exposure[:32]!r} is not one of {known}") from None
        await keys.set_exposure(self.db, name, setting.value)
        await self._audit(principal, "key.set_exposure", name, {"exposure": setting.value})
        return (await keys.latest_key(self.db, name)).to_json()

    async def set_kbs_path(
        self, principal: Principal, name: str, path: str | None
    ) -> dict[str, Any]:
        """Make the key answer at the KBS resource path ``repository/type/tag`` (in place of
        any it had; one key per path), or at none when ``path`` is None."""
        require(principal, Role.KEY_CUSTODIAN)
        checked_name(name, "key")
        parsed = None if path is None else parse_kbs_path(path)
        await keys.set_kbs_path(self.db, name, parsed, principal.actor)
        shown = None if parsed is None else str(parsed)
        await self._audit(principal, "key.set_kbs_path", name, {"kbs_path": shown})
        return (await keys.latest_key(self.db, name)).to_json()

    async def list_keys(self, principal: Principal) -> list[dict[str, Any]]:
        require(principal, *READ_KEYS)
        return [info.to_json() for info in await keys.list_keys(self.db)]

    async def rotate_kek(self, principal: Principal) -> dict[str, str]:
        require(principal, Role.KEY_CUSTODIAN)
        async with self.db.transaction() as conn:  # one rotation at a time, everywhere
            await kek.lock_rotation(conn)
            with hsm_errors():
                label = await asyncio.to_thread(self.custody.rotate_kek)
        await self._audit(principal, "kek.rotate", None, {"kek_label": label})
        return {"kek_label": label}

    # --- policies --------------------------------------------------------------------------

    async def publish_policy(self, principal: Principal, policy: Policy) -> dict[str, Any]:
        require(principal, Role.POLICY_AUTHOR)
        document, digest = stored_form(policy)
        record = await policies.publish(
            self.db,
            name=policy.name,
            version=policy.version,
            document=document,
            digest=digest,
            actor=principal.actor,
        )
        await self._audit(
            principal,
            "policy.publish",
            None,
            {"policy": {"name": record.name, "version": record.version, "sha256": digest}},
        )
        return record.summary()

    async def publish_policy_json(self, principal: Principal, text: str) -> dict[str, Any]:
        require(principal, Role.POLICY_AUTHOR)
        policy = load_policy_text(text, source="<request>", is_json=True)
        return await self.publish_policy(principal, policy)

    async def bind_policy(
        self,
        principal: Principal,
        key_name: str,
        policy_name: str,
        version: int | None,
        lock: bool,
    ) -> dict[str, Any]:
        require(principal, Role.POLICY_AUTHOR)
        checked_name(key_name, "key")
        checked_name(policy_name, "policy")
        checked_version(version, "policy")
        binding = await bindings.bind(
            self.db,
            key_name=key_name,
            policy_name=policy_name,
            version=version,
            lock=lock,
            actor=principal.actor,
        )
        await self._audit(principal, "key.bind_policy", key_name, {"binding": binding})
        return binding

    async def list_policies(self, principal: Principal) -> list[dict[str, Any]]:
        require(principal, *READ_POLICIES)
        return await policies.list_latest(self.db)

    async def get_policy(
        self, principal: Principal, name: str, version: int | None
    ) -> dict[str, Any]:
        require(principal, *READ_POLICIES)
        checked_name(name, "policy")
        checked_version(version, "policy")
        record = await policies.get(self.db, name, version)
        return {**record.summary(), "document": record.document}

    async def replay_policy(
        self, principal: Principal, draft: Policy, key_name: str | None, window: str
    ) -> dict[str, Any]:
        """What ``draft`` would have decided for the releases of the last ``window``
        (``30d``): of ``key_name``, or of every key whose releases a policy of the draft's
        name decided (``broker/policy/replay.py``). Reads the audit trail in batches; each
        batch is decided in a worker thread, so the event loop keeps serving."""
        require(principal, *REPLAY_POLICIES)
        if key_name is not None:
            checked_name(key_name, "key")
        if _WINDOW.fullmatch(window) is None:
            raise BadRequest(
                f"since must be a whole number and a unit s, m, h or d (30d), not {window!r}"
            )
        lifetime = timedelta(seconds=self.runtime.settings.token_ttl_seconds)
        since = utcnow() - Duration(window).delta
        return await replay_history(self.db, Replay(draft, since, lifetime, key_name))

    async def replay_policy_json(
        self, principal: Principal, name: str, text: str, key_name: str | None, window: str
    ) -> dict[str, Any]:
        """:meth:`replay_policy` of a draft given as JSON text, which must be policy
        ``name``."""
        require(principal, *REPLAY_POLICIES)
        checked_name(name, "policy")
        draft = load_policy_text(text, source="<request>", is_json=True)
        if draft.name != name:
            message = f"the draft is policy {draft.name}, not {name}"
            raise PolicyError(message, [{"path": "$.name", "message": message}])
        return await self.replay_policy(principal, draft, key_name, window)

    async def diff_policy(
        self, principal: Principal, name: str, old_version: int, new_version: int
    ) -> dict[str, Any]:
        """The semantic difference between two published versions of ``name``
        (``broker/policy/diff.py``)."""
        require(principal, *READ_POLICIES)
        checked_name(name, "policy")
        checked_version(old_version, "policy")
        checked_version(new_version, "policy")
        old, new = (
            await policies.get(self.db, name, old_version),
            await policies.get(self.db, name, new_version),
        )
        differences = diff(
            load_policy_text(old.document, source=f"{name} v{old_version}", is_json=True),
            load_policy_text(new.document, source=f"{name} v{new_version}", is_json=True),
        )
        return {
            "name": name,
            "from": {"version": old.version, "sha256": old.digest},
            "to": {"version": new.version, "sha256": new.digest},
            "summary": summary(differences),
            "differences": [d.to_json() for d in differences],
        }

    # --- audit -----------------------------------------------------------------------------

    async def audit_tail(self, principal: Principal, limit: int) -> list[dict[str, Any]]:
        require(principal, Role.AUDITOR)
        return await audit.tail(self.db, limit)

    async def audit_verify(self, principal: Principal) -> ChainReport:
        require(principal, Role.AUDITOR)
        return await verify_chain(self.db)

    # --- admin tokens ----------------------------------------------------------------------

    async def create_token(self, principal: Principal, name: str, role: Role) -> dict[str, str]:
        require(principal, Role.ADMIN)
        if not TOKEN_NAME.fullmatch(name):
            raise BadRequest("token name must be 1-128 printable ASCII characters")
        if principal.role is not None and role not in API_MINTED_ROLES:  # not the CLI
            raise Forbidden(
                f"separation of duties: the admin API creates only admin and auditor tokens; "
                f"a {role.value} token is created with the local CLI (`keybroker admin token "
                f"create --role {role.value}`), which needs the database and HSM credentials"
            )
        token_id, token = await admin_tokens.create(self.db, name, role, principal.actor)
        await self._audit(
            principal,
            "token.create",
            None,
            {"token_id": token_id, "name": name, "role": role.value},
        )
        return {"id": token_id, "name": name, "role": role.value, "token": token.reveal()}

    async def list_tokens(self, principal: Principal) -> list[dict[str, str | None]]:
        require(principal, Role.ADMIN)
        return await admin_tokens.list_tokens(self.db)

    async def revoke_token(self, principal: Principal, token_id: str) -> dict[str, str]:
        require(principal, Role.ADMIN)
        if not admin_tokens.is_token_id(token_id):
            raise BadRequest("token id must be 16 lowercase hex digits")
        if not await admin_tokens.revoke(self.db, token_id):
            raise Conflict(f"token {token_id} does not exist or is already revoked")
        await self._audit(principal, "token.revoke", None, {"token_id": token_id})
        return {"id": token_id, "revoked": "true"}

    # --- KMS access keys (docs/kms.md) -----------------------------------------------------

    async def create_access_key(self, principal: Principal, name: str) -> dict[str, str]:
        """A new KMS access key: its secret is sealed under the KEK inside the HSM and shown
        once, in this answer."""
        require(principal, Role.ADMIN)
        if not ACCESS_KEY_NAME.fullmatch(name):
            raise BadRequest(
                "access key name must be 1-64 of a-z 0-9 . _ - starting with a letter or digit"
            )
        access_key_id = access_keys.new_id()
        secret = access_keys.new_secret()
        with hsm_errors():
            sealed = await asyncio.to_thread(self.custody.import_secret, secret.encode("ascii"))
        try:
            await access_keys.insert(self.db, access_key_id, name, sealed, principal.actor)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"an access key named {name} exists (names are never reused)") from None
        await self._audit(
            principal,
            "access-key.create",
            None,
            {"access_key_id": access_key_id, "name": name, "kek_label": sealed.kek_label},
        )
        return {"access_key_id": access_key_id, "name": name, "secret_access_key": secret}

    async def list_access_keys(self, principal: Principal) -> list[dict[str, Any]]:
        require(principal, Role.ADMIN)
        return await access_keys.list_keys(self.db)

    async def revoke_access_key(self, principal: Principal, access_key_id: str) -> dict[str, str]:
        require(principal, Role.ADMIN)
        if not ACCESS_KEY_ID.fullmatch(access_key_id):
            raise BadRequest("access key id must be KB and 18 of A-Z 2-7")
        if not await access_keys.revoke(self.db, access_key_id, principal.actor):
            raise Conflict(f"access key {access_key_id} does not exist or is already revoked")
        await self._audit(principal, "access-key.revoke", None, {"access_key_id": access_key_id})
        return {"access_key_id": access_key_id, "revoked": "true"}
