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
import json
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from broker.errors import BadRequest, Conflict, Forbidden, NotFound, PolicyError
from broker.hsmcalls import hsm_errors
from broker.names import checked_name, checked_version, parse_kbs_path
from broker.policy.diff import diff, summary
from broker.policy.evaluate import evaluate
from broker.policy.loader import load_policy_text
from broker.policy.model import Duration, Policy
from broker.policy.replay import Replay, claims_of_record
from broker.release.policies import stored_form
from broker.roles import Principal, Role
from broker.runtime import Runtime
from broker.store import access_keys, admin_tokens, audit, bindings, byok, kek, keys, policies
from broker.store.audit import TAIL_LIMIT as AUDIT_PAGE_LIMIT
from broker.store.audit import Activity, AuditQuery, AuditRecord, ChainReport, verify_chain
from broker.store.database import Database
from broker.timeutil import iso, parse_instant, utcnow
from hsm.byok import WRAPPING_KEY_BITS
from hsm.custody import Custody, WrappedSecret
from hsm.jwe import Exposure
from hsm.provision import kek_label

__all__ = ["AUDIT_DECISIONS", "AUDIT_PAGE_LIMIT", "AdminService", "AuditQuery"]

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
#: Key versions re-sealed per transaction: each holds the rotation lock (creating a key
#: waits for it) for the HSM work of one batch, a fraction of a second.
REWRAP_BATCH = 500
#: How long an import wrapping key is accepted by default, as AWS KMS's import parameters.
IMPORT_KEY_HOURS = 24
MAX_IMPORT_KEY_HOURS = 168
#: What an importer wraps key material with (hsm/byok.py names each parameter's source).
WRAPPING_PARAMETERS = {
    "algorithm": "CKM_RSA_AES_KEY_WRAP",
    "rsa_bits": WRAPPING_KEY_BITS,
    "oaep": {"hash": "sha1", "mgf": "mgf1-sha1", "label": ""},
    "aes_key_wrap": "rfc5649",
    "aes_bits": 256,
}
#: The decisions audit records carry: release and attest outcomes, and ``ok`` for admin
#: actions.
AUDIT_DECISIONS = ("allow", "deny", "error", "ok")
DEFAULT_TOKEN_DAYS = 90
#: Who destroys a key whose deletion came due, in its audit record.
DELETION_ACTOR = "system:scheduled-deletion"
#: The longest window, and the most buckets, one activity chart reads.
MAX_ACTIVITY_WINDOW = timedelta(days=31)
MAX_ACTIVITY_BUCKETS = 200
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


async def _audit_in(
    conn: asyncpg.Connection,
    actor: str,
    action: str,
    key_name: str | None,
    details: dict[str, Any],
) -> None:
    """Append an admin record inside the caller's transaction: it commits with the change."""
    record = AuditRecord(
        utcnow(), "admin", "ok", None, key_name, {"action": action, "actor": actor, **details}
    )
    await audit.append(conn, record)


async def destroy_due_keys(db: Database, now: datetime, limit: int = 100) -> list[str]:
    """Destroy the sealed blobs of every key whose deletion is due at ``now`` (up to
    ``limit``), each with its audit record in the same transaction: a key is destroyed only
    with its record committed. Safe to run in several processes at once."""
    destroyed: list[str] = []
    if not await keys.deletion_due(db, now):
        return destroyed
    async with db.transaction() as conn:
        for name in await keys.due_deletions(conn, now, limit):
            versions = await keys.destroy(conn, name, now, DELETION_ACTOR)
            await _audit_in(conn, DELETION_ACTOR, "key.destroy", name, {"versions": versions})
            destroyed.append(name)
    return destroyed


_WRAPPING_KEY_ID = re.compile(r"[0-9a-f]{16}")


def is_wrapping_key_id(text: str) -> bool:
    return _WRAPPING_KEY_ID.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class WrappedImport:
    """Key material wrapped to an import wrapping key (``CKM_RSA_AES_KEY_WRAP`` layout)."""

    key_id: str
    material: bytes
    secret_length: int

    def __repr__(self) -> str:
        return f"WrappedImport(key_id={self.key_id!r}, material=<{len(self.material)} bytes>)"


def _origin(secret: bytes | None, wrapped_import: WrappedImport | None) -> dict[str, str]:
    """How a key version's secret came to the HSM, for its audit record."""
    if secret is not None:
        return {"origin": "imported"}
    if wrapped_import is not None:
        return {"origin": "imported-wrapped", "wrapping_key_id": wrapped_import.key_id}
    return {"origin": "generated-in-hsm"}


async def destroy_expired_wrapping_keys(
    db: Database, custody: Custody, now: datetime, limit: int = 100
) -> list[str]:
    """Destroy the token objects of import wrapping keys expired at ``now``, each recorded
    in the transaction that marks it destroyed. Safe to run in several processes at once."""
    destroyed: list[str] = []
    if not await byok.expiry_due(db, now):
        return destroyed
    async with db.transaction() as conn:
        for key_id in await byok.expired(conn, now, limit):
            await byok.mark_destroyed(conn, key_id, now)
            await _audit_in(
                conn, DELETION_ACTOR, "key.destroy_wrapping_key", None, {"wrapping_key_id": key_id}
            )
            with hsm_errors():
                await asyncio.to_thread(custody.destroy_wrapping_key, key_id)
            destroyed.append(key_id)
    return destroyed


def _token_lifetime(days: int) -> timedelta:
    if not 1 <= days <= admin_tokens.MAX_LIFETIME_DAYS:
        raise BadRequest(f"a token lives 1 to {admin_tokens.MAX_LIFETIME_DAYS} days, not {days}")
    return timedelta(days=days)


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
            await _audit_in(conn, principal.actor, action, key_name, details)

    async def _check_kek_kept(self, conn: asyncpg.Connection, sealed: WrappedSecret) -> None:
        """Before storing ``sealed`` in ``conn``'s transaction: its KEK is still on the
        token. A retirement takes the rotation lock exclusively, so under this shared hold
        the KEK is either still there (and the retirement will see the new row and refuse)
        or gone."""
        await kek.lock_rotation_shared(conn)
        with hsm_errors():
            present = await asyncio.to_thread(self.custody.has_kek, sealed.kek_label)
        if not present:
            raise Conflict(f"{sealed.kek_label} was retired meanwhile; try again")

    # --- keys ------------------------------------------------------------------------------

    async def create_key(
        self,
        principal: Principal,
        name: str,
        secret: bytes | None,
        generate_length: int | None,
        new_version: bool = False,
        *,
        wrapped_import: WrappedImport | None = None,
    ) -> dict[str, Any]:
        """Import ``secret`` (sealed at once), key material wrapped to an import wrapping key
        (unwrapped and sealed inside the HSM), or generate one in the HSM, as version 1 of a
        new key, or as the next version of an existing one when ``new_version``."""
        require(principal, Role.KEY_CUSTODIAN)
        checked_name(name, "key")
        given = [item is not None for item in (secret, generate_length, wrapped_import)]
        if sum(given) != 1:
            raise BadRequest(
                "give exactly one of a secret to import, wrapped key material or a length to "
                "generate"
            )
        if wrapped_import is not None:
            if not is_wrapping_key_id(wrapped_import.key_id):
                raise BadRequest("wrapping key id must be 16 lowercase hex digits")
            await byok.check_usable(self.db, wrapped_import.key_id, utcnow())
        existing = await keys.find_latest(self.db, name)
        if new_version and existing is None:
            raise keys.not_found(name)
        if not new_version and existing is not None:
            raise Conflict(f"key {name} exists; rotate it to add a version")
        wrapped: WrappedSecret
        with hsm_errors():
            if secret is not None:
                wrapped = await asyncio.to_thread(self.custody.import_secret, secret)
            elif wrapped_import is not None:
                wrapped = await asyncio.to_thread(
                    self.custody.import_wrapped,
                    wrapped_import.key_id,
                    wrapped_import.material,
                    wrapped_import.secret_length,
                )
            else:
                length = generate_length or 0
                wrapped = await asyncio.to_thread(self.custody.generate_secret, length)
        async with self.db.transaction() as conn:
            await self._check_kek_kept(conn, wrapped)
            info = await keys.insert_key_version(conn, name, wrapped, principal.actor)
        await self._audit(
            principal,
            "key.rotate" if new_version else "key.create",
            name,
            {
                "version": info.version,
                "kek_label": info.kek_label,
                "secret_length": info.secret_length,
                **_origin(secret, wrapped_import),
            },
        )
        return info.to_json()

    async def make_import_wrapping_key(
        self, principal: Principal, valid_hours: int = IMPORT_KEY_HOURS
    ) -> dict[str, Any]:
        """A new RSA-3072 wrapping key held by the HSM, to wrap key material to for
        :meth:`create_key` (``hsm/byok.py``), accepted for ``valid_hours`` (1..168)."""
        require(principal, Role.KEY_CUSTODIAN)
        if not 1 <= valid_hours <= MAX_IMPORT_KEY_HOURS:
            raise BadRequest(f"a wrapping key is valid 1 to {MAX_IMPORT_KEY_HOURS} hours")
        key_id = secrets.token_hex(8)
        with hsm_errors():
            public = await asyncio.to_thread(self.custody.make_wrapping_key, key_id)
        now = utcnow()
        expires = now + timedelta(hours=valid_hours)
        try:
            der = public.spki_der()
            await byok.insert(self.db, key_id, der, now=now, actor=principal.actor, expires=expires)
        except BaseException:  # not recorded: it could never be used, nor swept
            with hsm_errors():
                await asyncio.to_thread(self.custody.destroy_wrapping_key, key_id)
            raise
        await self._audit(
            principal,
            "key.import_wrapping_key",
            None,
            {"wrapping_key_id": key_id, "expires_at": iso(expires)},
        )
        return {
            "id": key_id,
            "public_key": public.spki_pem(),
            "expires_at": iso(expires),
            **WRAPPING_PARAMETERS,
        }

    async def set_key_state(self, principal: Principal, name: str, state: str) -> dict[str, Any]:
        require(principal, Role.KEY_CUSTODIAN)
        checked_name(name, "key")
        await keys.set_state(self.db, name, state, principal.actor)
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
        await keys.set_exposure(self.db, name, setting.value, principal.actor)
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

    async def show_key(self, principal: Principal, name: str) -> dict[str, Any]:
        """The key's newest version with its binding, every version (each with the KEK it
        is sealed under) and its scheduled deletion."""
        require(principal, *READ_KEYS)
        checked_name(name, "key")
        info = await keys.latest_key(self.db, name)
        return {
            **info.to_json(),
            "kms_alias": await self._kms_alias(info),
            "versions": [v.to_json() for v in await keys.versions(self.db, name)],
            "deletion": await keys.deletion(self.db, name),
        }

    async def _kms_alias(self, info: keys.KeyInfo) -> str | None:
        """``alias/<name>`` when the policy bound to the key serves it over the KMS endpoint
        (its ``kms`` member, docs/kms.md); None otherwise, and once the key is destroyed."""
        if info.policy is None or info.state == "destroyed":
            return None
        bound = await policies.get(self.db, info.policy, info.policy_version)
        return f"alias/{info.name}" if "kms" in json.loads(bound.document) else None

    async def schedule_deletion(self, principal: Principal, name: str, days: int) -> dict[str, Any]:
        """Make the key unusable now and destroy its sealed blobs after ``days`` (7..30),
        unless :meth:`cancel_deletion` comes first."""
        require(principal, Role.KEY_CUSTODIAN)
        checked_name(name, "key")
        keys.check_deletion_days(days)
        async with self.db.transaction() as conn:
            due = await keys.schedule_deletion(conn, name, utcnow(), days, principal.actor)
            await _audit_in(
                conn, principal.actor, "key.schedule_deletion", name, {"destroy_after": iso(due)}
            )
        return await self.show_key(principal, name)

    async def cancel_deletion(self, principal: Principal, name: str) -> dict[str, Any]:
        """Cancel a pending deletion: the key gets back the state it had."""
        require(principal, Role.KEY_CUSTODIAN)
        checked_name(name, "key")
        async with self.db.transaction() as conn:
            restored = await keys.cancel_deletion(conn, name, principal.actor)
            await _audit_in(conn, principal.actor, "key.cancel_deletion", name, {"state": restored})
        return await self.show_key(principal, name)

    async def destroy_due_keys(self, now: datetime, limit: int = 100) -> list[str]:
        """:func:`destroy_due_keys` on the broker's database."""
        return await destroy_due_keys(self.db, now, limit)

    async def rotate_kek(self, principal: Principal) -> dict[str, str]:
        """Create the next KEK version; new key versions are sealed under it from now on,
        existing ones stay under theirs until :meth:`rewrap_keys`."""
        require(principal, Role.KEY_CUSTODIAN)
        async with self.db.transaction() as conn:  # one rotation at a time, everywhere
            await kek.lock_token_objects(conn)
            with hsm_errors():
                label = await asyncio.to_thread(self.custody.rotate_kek)
        await self._audit(principal, "kek.rotate", None, {"kek_label": label})
        return {"kek_label": label}

    async def kek_status(self, principal: Principal) -> dict[str, Any]:
        """Each KEK on the token (newest last) and how many key versions and KMS access
        keys it seals."""
        require(principal, *READ_KEYS)
        with hsm_errors():
            versions = await asyncio.to_thread(self.custody.kek_versions)
        async with self.db.connection() as conn:
            used = await kek.usage(conn)
            sealed_access_keys = await kek.access_key_usage(conn)
        labels = [kek_label(version) for version in versions]
        current = labels[-1] if labels else None
        return {
            "current": current,
            "keks": [
                {
                    "label": label,
                    "version": version,
                    "key_versions": used.pop(label, 0),
                    "access_keys": sealed_access_keys.get(label, 0),
                }
                for version, label in zip(versions, labels, strict=True)
            ],
            # Versions sealed under a label the token no longer holds: never by our writes.
            "missing": used,
        }

    async def rewrap_keys(
        self, principal: Principal, limit: int | None = None, batch: int = REWRAP_BATCH
    ) -> dict[str, Any]:
        """Re-seal every stored key version not under the newest KEK under it, inside the
        HSM (``Custody.rewrap``), in batches that each commit with their audit record: an
        interrupted re-wrap resumes where it stopped when run again. With ``limit``, stop
        after about that many (the API's calls stay short). Releases go on meanwhile: one
        that read a version before its batch committed finds its context changed when it
        commits its record, and decides again on the new blob."""
        require(principal, Role.KEY_CUSTODIAN)
        if limit is not None and limit < 1:
            raise BadRequest("limit must be at least 1")
        with hsm_errors():
            target = await asyncio.to_thread(self.custody.current_kek_label)
        rewrapped, after = 0, ("", 0)
        while limit is None or rewrapped < limit:
            size = batch if limit is None else min(batch, limit - rewrapped)
            async with self.db.transaction() as conn:
                await kek.lock_token_objects(conn)  # one re-wrap, rotation or retirement at once
                found = await kek.to_rewrap(conn, target, after, size)
                if not found:
                    break
                with hsm_errors():
                    resealed = await asyncio.to_thread(
                        self.custody.rewrap, [wrapped for _, _, wrapped in found], target
                    )
                stored = await kek.store_rewrapped(conn, found, resealed, target)
                sources = dict(sorted(Counter(w.kek_label for _, _, w in found).items()))
                details = {"kek_label": target, "versions": stored, "from": sources}
                await _audit_in(conn, principal.actor, "kek.rewrap", None, details)
            rewrapped += stored
            after = (found[-1][0], found[-1][1])
        access_keys_rewrapped = await self._rewrap_access_keys(principal, target)
        async with self.db.connection() as conn:
            used = await kek.usage(conn)
            sealed_access_keys = await kek.access_key_usage(conn)
        remaining = sum(count for label, count in used.items() if label != target)
        remaining += sum(n for label, n in sealed_access_keys.items() if label != target)
        return {
            "kek_label": target,
            "rewrapped": rewrapped,
            "access_keys": access_keys_rewrapped,
            "remaining": remaining,
        }

    async def _rewrap_access_keys(self, principal: Principal, target: str) -> int:
        """Re-seal the KMS access keys' secrets not under ``target`` under it, inside the
        HSM, in one transaction with its audit record (there are few); how many."""
        async with self.db.transaction() as conn:
            await kek.lock_token_objects(conn)
            found = await kek.access_keys_to_rewrap(conn, target)
            if not found:
                return 0
            with hsm_errors():
                resealed = await asyncio.to_thread(
                    self.custody.rewrap, [wrapped for _, wrapped in found], target
                )
            stored = await kek.store_rewrapped_access_keys(conn, found, resealed, target)
            sources = dict(sorted(Counter(w.kek_label for _, w in found).items()))
            details = {"kek_label": target, "access_keys": stored, "from": sources}
            await _audit_in(conn, principal.actor, "kek.rewrap", None, details)
        return stored

    async def retire_kek(self, principal: Principal, version: int) -> dict[str, Any]:
        """Destroy the KEK ``version`` on the token; refused while it is the newest, or while
        any stored key version is sealed under it."""
        require(principal, Role.KEY_CUSTODIAN)
        checked_version(version, "KEK")
        label = kek_label(version)
        async with self.db.transaction() as conn:
            await kek.lock_token_objects(conn)
            with hsm_errors():
                versions = await asyncio.to_thread(self.custody.kek_versions)
            if version not in versions:
                raise NotFound(f"no KEK {label} on the token")
            if version == max(versions):
                raise Conflict(f"{label} is the current KEK; rotate first, then re-wrap")
            sealed = (await kek.usage(conn)).get(label, 0)
            if sealed:
                raise Conflict(
                    f"{sealed} key {'version is' if sealed == 1 else 'versions are'} sealed "
                    f"under {label}; re-seal them first (`keybroker kek rewrap`)"
                )
            sealed = (await kek.access_key_usage(conn)).get(label, 0)
            if sealed:
                raise Conflict(
                    f"{sealed} KMS access {'key is' if sealed == 1 else 'keys are'} sealed "
                    f"under {label}; re-seal them first (`keybroker kek rewrap`)"
                )
            # The record first: should the token refuse, the transaction takes it back.
            await _audit_in(conn, principal.actor, "kek.retire", None, {"kek_label": label})
            with hsm_errors():
                await asyncio.to_thread(self.custody.destroy_kek, label)
        return {"kek_label": label, "retired": True}

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

    async def policy_versions(self, principal: Principal, name: str) -> list[dict[str, Any]]:
        """Every published version of ``name``, oldest first; NotFound when none."""
        require(principal, *READ_POLICIES)
        checked_name(name, "policy")
        found = await policies.versions(self.db, name)
        if not found:
            raise NotFound(f"no policy named {name}")
        return found

    # --- audit -----------------------------------------------------------------------------

    async def audit_records(
        self, principal: Principal, selected: AuditQuery, limit: int, *, newest_first: bool
    ) -> list[dict[str, Any]]:
        """Records ``selected`` picks, parsed, in sequence order or newest first."""
        require(principal, Role.AUDITOR)
        if selected.decision is not None and selected.decision not in AUDIT_DECISIONS:
            raise BadRequest(f"outcome must be one of {', '.join(AUDIT_DECISIONS)}")
        return await audit.search(self.db, selected, limit, newest_first=newest_first)

    async def audit_record(self, principal: Principal, seq: int) -> dict[str, Any]:
        """Record ``seq``, its content parsed into ``record``; NotFound when none."""
        require(principal, Role.AUDITOR)
        found = await audit.record(self.db, seq)
        if found is None:
            raise NotFound(f"no audit record {seq}")
        return found

    async def explain_release(self, principal: Principal, seq: int) -> dict[str, Any]:
        """Record ``seq`` (``entry``), and for a release its policy decision made again with
        every clause and the value it found: the policy version the record names (its digest
        checked) on the claims of the attestation that issued the record's token, at the
        record's instant. The record keeps only the failed clauses; this shows the passed
        ones as well. The record's own outcome stays what was decided (a release limit can
        refuse what every clause allows). ``explanation`` is None, with ``unavailable``
        saying why, when no policy's clauses decided the record or its attestation's claims
        are not in the trail."""
        entry = await self.audit_record(principal, seq)
        explained = await self._explain(entry)
        return {"entry": entry, "unavailable": None, **explained}

    async def _explain(self, entry: dict[str, Any]) -> dict[str, Any]:
        body = entry["record"]
        decided_by = body.get("policy")
        token_id = body.get("token_id")
        if entry["kind"] != "release" or not isinstance(decided_by, dict):
            return {"explanation": None, "unavailable": "not a release decided by a policy"}
        at = parse_instant(entry["at"])
        lifetime = timedelta(seconds=self.runtime.settings.token_ttl_seconds)
        since = at - lifetime - REPLAY_CLOCK_MARGIN
        attested = None
        if isinstance(token_id, str):
            attested = await audit.attestation_of(self.db, token_id, since, at)
        claims = None if attested is None else claims_of_record(attested[1])
        if attested is None or claims is None:
            return {
                "explanation": None,
                "unavailable": "the attestation that issued its token is not in the trail",
            }
        stored = await policies.get(self.db, decided_by["name"], decided_by["version"])
        if stored.digest != decided_by.get("sha256"):
            return {
                "explanation": None,
                "unavailable": "the stored policy version is not the one the record names",
            }
        policy = load_policy_text(stored.document, source="<stored>", is_json=True)
        decision = evaluate(policy, claims, at)
        return {
            "explanation": [clause.to_json() for clause in decision.explanation],
            "allow": decision.allow,
            "attestation_seq": attested[0],
        }

    async def release_activity(
        self,
        principal: Principal,
        since: datetime,
        until: datetime,
        bucket: timedelta,
        key_name: str | None = None,
    ) -> list[Activity]:
        """Releases and refusals in [``since``, ``until``) per ``bucket``, key, decision and
        reason (:func:`broker.store.audit.activity`), at most :data:`MAX_ACTIVITY_BUCKETS`
        buckets over at most :data:`MAX_ACTIVITY_WINDOW`."""
        require(principal, Role.AUDITOR)
        if key_name is not None:
            checked_name(key_name, "key")
        if not timedelta(0) < until - since <= MAX_ACTIVITY_WINDOW:
            raise BadRequest(f"the window must be longer than 0 and at most {MAX_ACTIVITY_WINDOW}")
        if bucket <= timedelta(0) or (until - since) / bucket > MAX_ACTIVITY_BUCKETS:
            raise BadRequest(f"the window must hold 1 to {MAX_ACTIVITY_BUCKETS} buckets")
        return await audit.activity(self.db, since, until, bucket, key_name)

    async def audit_verify(
        self, principal: Principal, since: datetime | None = None
    ) -> ChainReport:
        require(principal, Role.AUDITOR)
        return await verify_chain(self.db, since)

    # --- admin tokens ----------------------------------------------------------------------

    async def create_token(
        self, principal: Principal, name: str, role: Role, days: int = DEFAULT_TOKEN_DAYS
    ) -> dict[str, str]:
        require(principal, Role.ADMIN)
        lifetime = _token_lifetime(days)
        if not TOKEN_NAME.fullmatch(name):
            raise BadRequest("token name must be 1-128 printable ASCII characters")
        if principal.role is not None and role not in API_MINTED_ROLES:  # not the CLI
            raise Forbidden(
                f"separation of duties: the admin API creates only admin and auditor tokens; "
                f"a {role.value} token is created with the local CLI (`keybroker admin token "
                f"create --role {role.value}`), which needs the database and HSM credentials"
            )
        expires_at = utcnow() + lifetime
        token_id, token = await admin_tokens.create(
            self.db, name, role, principal.actor, expires_at
        )
        expires = iso(expires_at)
        await self._audit(
            principal,
            "token.create",
            None,
            {"token_id": token_id, "name": name, "role": role.value, "expires_at": expires},
        )
        return {
            "id": token_id,
            "name": name,
            "role": role.value,
            "expires_at": expires,
            "token": token.reveal(),
        }

    async def rotate_token(
        self, principal: Principal, token_id: str, days: int = DEFAULT_TOKEN_DAYS
    ) -> dict[str, str]:
        """Replace a token by a new one of the same name and role, revoking it at once. An
        admin rotates admin and auditor tokens over the API (as it creates them), and any
        caller its own token; the local CLI any token."""
        if not admin_tokens.is_token_id(token_id):
            raise BadRequest("token id must be 16 lowercase hex digits")
        lifetime = _token_lifetime(days)
        if principal.token_id != token_id:
            require(principal, Role.ADMIN)
            role = await admin_tokens.role_of(self.db, token_id)  # a token's role never changes
            if principal.role is not None and role is not None and role not in API_MINTED_ROLES:
                raise Forbidden(
                    f"separation of duties: a {role.value} token is rotated by its holder or "
                    "with the local CLI, not by an admin over the API"
                )
        expires_at = utcnow() + lifetime
        rotated = await admin_tokens.rotate(self.db, token_id, principal.actor, expires_at)
        expires = iso(expires_at)
        await self._audit(
            principal,
            "token.rotate",
            None,
            {"token_id": token_id, "new_token_id": rotated.new_id, "expires_at": expires},
        )
        return {
            "id": rotated.new_id,
            "replaces": token_id,
            "name": rotated.name,
            "role": rotated.role.value,
            "expires_at": expires,
            "token": rotated.token.reveal(),
        }

    async def whoami(self, principal: Principal) -> dict[str, Any]:
        """Who the caller is: actor, role, token and its expiry (every role may ask)."""
        return {
            "actor": principal.actor,
            "role": None if principal.role is None else principal.role.value,
            "token_id": principal.token_id,
            "expires_at": iso(principal.expires_at),
        }

    async def list_tokens(self, principal: Principal) -> list[dict[str, str | None]]:
        require(principal, Role.ADMIN)
        return await admin_tokens.list_tokens(self.db)

    async def revoke_token(self, principal: Principal, token_id: str) -> dict[str, Any]:
        require(principal, Role.ADMIN)
        if not admin_tokens.is_token_id(token_id):
            raise BadRequest("token id must be 16 lowercase hex digits")
        if not await admin_tokens.revoke(self.db, token_id):
            raise Conflict(f"token {token_id} does not exist or is already revoked")
        await self._audit(principal, "token.revoke", None, {"token_id": token_id})
        return {"id": token_id, "revoked": True}

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
        async with self.db.transaction() as conn:
            await self._check_kek_kept(conn, sealed)
            try:
                await access_keys.insert(conn, access_key_id, name, sealed, principal.actor)
            except asyncpg.UniqueViolationError:
                raise Conflict(
                    f"an access key named {name} exists (names are never reused)"
                ) from None
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

    async def revoke_access_key(self, principal: Principal, access_key_id: str) -> dict[str, Any]:
        require(principal, Role.ADMIN)
        if not ACCESS_KEY_ID.fullmatch(access_key_id):
            raise BadRequest("access key id must be KB and 18 of A-Z 2-7")
        if not await access_keys.revoke(self.db, access_key_id, principal.actor):
            raise Conflict(f"access key {access_key_id} does not exist or is already revoked")
        await self._audit(principal, "access-key.revoke", None, {"access_key_id": access_key_id})
        return {"access_key_id": access_key_id, "revoked": True}
