"""The release store in memory: what PostgreSQL does for the release orchestrator.

It keeps the same promises as ``broker/store/release.py``'s PostgreSQL store: a nonce is
consumed once, and its record appended with it or not at all; a conditional append writes
only when the context it is given equals the key's current one in every field; every append
is committed (kept) before it returns. Tests change ``contexts`` and ``documents`` as an
operator would change keys, bindings and policies, and read what was appended in ``log``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from broker.errors import InternalError
from broker.names import KbsPath
from broker.policy.limits import Counters
from broker.policy.model import Duration, Limits, RatePerInstance
from broker.store.audit import AuditRecord
from broker.store.contexts import LimitRefused, LimitTake, ReleaseContext


class MemoryReleaseStore:
    def __init__(
        self,
        contexts: Iterable[ReleaseContext] = (),
        documents: Mapping[tuple[str, int], str] | None = None,
        kbs_paths: Mapping[str, str] | None = None,
    ) -> None:
        self.contexts = {context.name: context for context in contexts}
        """Each key's current release context, by key name."""
        self.documents = dict(documents or {})
        """Stored policy documents, by (name, version)."""
        self.kbs_paths = dict(kbs_paths or {})
        """The key that answers at each KBS path (``repository/type/tag``)."""
        self.consumed: dict[bytes, str] = {}
        """Consumed nonces and the tee each was issued for."""
        self.log: list[AuditRecord] = []
        """The audit log; a record's sequence number is its position, from 1."""
        self.calls: Counter[str] = Counter()
        """How many times each operation ran (each would be one statement)."""
        self.counters: dict[str, Counters] = {}
        """Each key's release-limit counters (``release_counts`` and
        ``instance_release_counts``)."""

    def _append(self, record: AuditRecord) -> int:
        self.log.append(record)
        return len(self.log)

    async def consume_nonce_and_append(
        self, nonce: bytes, tee: str, expires_at: datetime, record: AuditRecord
    ) -> int | None:
        self.calls["consume_nonce_and_append"] += 1
        if nonce in self.consumed:
            return None
        self.consumed[nonce] = tee
        return self._append(record)

    async def consume_nonce_and_append_if_current(
        self,
        nonce: bytes,
        tee: str,
        expires_at: datetime,
        context: ReleaseContext,
        record: AuditRecord,
        *,
        take: LimitTake | None,
    ) -> tuple[bool, int | LimitRefused | None]:
        self.calls["consume_nonce_and_append_if_current"] += 1
        self._check_same_key(context, record)
        if self.contexts.get(context.name) != context:
            return False, None
        if nonce in self.consumed:
            return True, None
        if take is not None:
            refused = self._take(context, record, take)
            if refused is not None:  # nothing consumed, counted or appended
                return True, refused
        self.consumed[nonce] = tee
        return True, self._append(record)

    async def append(self, record: AuditRecord) -> int:
        self.calls["append"] += 1
        return self._append(record)

    async def context(self, key_name: str) -> ReleaseContext | None:
        self.calls["context"] += 1
        return self.contexts.get(key_name)

    async def append_if_current(self, context: ReleaseContext, record: AuditRecord) -> int | None:
        self.calls["append_if_current"] += 1
        self._check_same_key(context, record)
        if self.contexts.get(context.name) != context:
            return None
        return self._append(record)

    async def append_within_limits(
        self, context: ReleaseContext, record: AuditRecord, take: LimitTake
    ) -> int | LimitRefused | None:
        self.calls["append_within_limits"] += 1
        self._check_same_key(context, record)
        if self.contexts.get(context.name) != context:
            return None
        refused = self._take(context, record, take)
        return refused if refused is not None else self._append(record)

    def _take(
        self, context: ReleaseContext, record: AuditRecord, take: LimitTake
    ) -> LimitRefused | None:
        """Take ``take`` with the key's counters (``audit_release_append``): the refusal,
        counting nothing, or None once counted."""
        rate = None
        if take.rate_releases is not None and take.rate_per is not None:
            per = Duration(f"{int(take.rate_per.total_seconds())}s")
            rate = RatePerInstance(take.rate_releases, per)
        limits = Limits(take.max_releases, take.once_per_instance, take.pin_to_first_instance, rate)
        counters = self.counters.setdefault(context.name, Counters())
        refusal = counters.take(limits, take.instance, record.at)
        if refusal is None:
            return None
        return LimitRefused(refusal.rule, refusal.found, refusal.retry_at)

    @staticmethod
    def _check_same_key(context: ReleaseContext, record: AuditRecord) -> None:
        if record.key_name != context.name:  # the statement takes key_name from the context
            raise InternalError(f"audit record for key {record.key_name} checked against another")

    async def key_at_path(self, path: KbsPath) -> str | None:
        self.calls["key_at_path"] += 1
        return self.kbs_paths.get(str(path))

    async def policy_document(self, name: str, version: int) -> str | None:
        self.calls["policy_document"] += 1
        return self.documents.get((name, version))
