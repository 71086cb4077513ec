-- Serialises publications of one policy name (held until the transaction ends), so two
-- cannot both find the same latest version and insert after it.
-- name: lock_policy_name
SELECT pg_advisory_xact_lock(hashtext('policy:' || $1));

-- name: insert_policy
INSERT INTO policies (name, version, document, digest, created_by)
VALUES ($1, $2, $3, $4, $5)
RETURNING name, version, digest, created_at;

-- name: policy_version
SELECT name, version, document, digest, created_at, created_by
FROM policies WHERE name = $1 AND version = $2;

-- name: latest_policy
SELECT name, version, document, digest, created_at, created_by
FROM policies WHERE name = $1 ORDER BY version DESC LIMIT 1;

-- name: list_policies
SELECT DISTINCT ON (name) name, version, digest, created_at, created_by
FROM policies ORDER BY name, version DESC;

-- name: key_binding
SELECT key_name, policy_name, policy_version, locked, updated_at, updated_by
FROM key_bindings WHERE key_name = $1;

-- name: key_binding_for_update
SELECT key_name, policy_name, policy_version, locked
FROM key_bindings WHERE key_name = $1 FOR UPDATE;

-- name: upsert_key_binding
INSERT INTO key_bindings (key_name, policy_name, policy_version, locked, updated_by)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key_name) DO UPDATE
SET policy_name = EXCLUDED.policy_name, policy_version = EXCLUDED.policy_version,
    locked = EXCLUDED.locked, updated_at = now(), updated_by = EXCLUDED.updated_by;

-- The policy that decides a release of the key, resolved in one round trip. The document
-- itself is read (policy_version) only when the broker has not compiled that digest yet.
-- audit_release_if_current below derives the context with the same FROM clause (a test
-- compares the two): keep them identical.
-- A destroyed key's blob is null (0005): read as empty bytes, it is refused by its state.
-- name: release_context
SELECT k.name, k.version, k.kek_label, coalesce(k.wrapped_blob, ''::bytea) AS wrapped_blob,
       k.secret_length, k.state, k.exposure,
       p.name AS policy_name, p.version AS policy_version, p.digest
FROM (SELECT * FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1) k
LEFT JOIN key_bindings b ON b.key_name = k.name
LEFT JOIN LATERAL (
    SELECT name, version, digest FROM policies
    WHERE name = b.policy_name AND (b.policy_version IS NULL OR version = b.policy_version)
    ORDER BY version DESC LIMIT 1
) p ON true;

-- Append a release's audit record only if the key's release context, derived now exactly as
-- release_context derives it, is still the one the decision and the envelope used ($1..$10:
-- name, version, state, kek_label, wrapped_blob, secret_length, the bound policy's name,
-- version and digest, null when none is bound, and the key's exposure). One statement, so
-- one implicit transaction: the audit head's row lock is held only while PostgreSQL commits.
-- `current` has a row only when every field matches; the lateral reference to current.name
-- (the record's key_name column) makes audit_append run once per such row, so a context that
-- changed since the broker read it (disabled, rotated, rebound, a newer policy version, its
-- exposure set to hsm-only) appends nothing and
-- no row comes back: the caller reads the context afresh and decides again. $11..$15: the
-- record's at, kind, decision, request_id and canonical text. $16..$21: the instance and the
-- policy's release limits (max_releases, once_per_instance, pin_to_first_instance, the rate's
-- releases and period), null or false when it states none; a limit that refuses returns a
-- row naming it with no seq, having written nothing (audit_release_append, migration 0006).
-- MATERIALIZED makes the
-- comparison complete before any row reaches audit_append: inlined, the CTE lets the planner
-- join the function to the key row alone and filter on the bound policy above it, which would
-- append a record for a stale context and then return no row.
-- name: audit_release_if_current
WITH current AS MATERIALIZED (
    SELECT k.name
    FROM (SELECT * FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1) k
    LEFT JOIN key_bindings b ON b.key_name = k.name
    LEFT JOIN LATERAL (
        SELECT name, version, digest FROM policies
        WHERE name = b.policy_name AND (b.policy_version IS NULL OR version = b.policy_version)
        ORDER BY version DESC LIMIT 1
    ) p ON true
    WHERE k.version = $2 AND k.state = $3 AND k.kek_label = $4
      AND coalesce(k.wrapped_blob, ''::bytea) = $5
      AND k.secret_length = $6
      AND p.name IS NOT DISTINCT FROM $7
      AND p.version IS NOT DISTINCT FROM $8
      AND p.digest IS NOT DISTINCT FROM $9
      AND k.exposure = $10
)
SELECT appended.seq, appended.refused, appended.found, appended.retry_at
FROM current, LATERAL audit_release_append(
    $11, $12, $13, $14, current.name, $15, $16, $17, $18, $19, $20, $21
) AS appended;

-- A one-request release's record, appended with its nonce consumed, in one statement, only if
-- the key's release context is still the one the decision used. $1..$15 as in
-- audit_release_if_current; $16..$18 the nonce, its tee and its expiry (the row's consumed_at
-- is $11, the record's at); $19..$24 the instance and the release limits, as $16..$21 there.
-- audit_release_consume_append (migration 0010) runs only when `current` has a row: it
-- consumes the nonce, then takes the limits and appends, and appends nothing for a nonce
-- consumed before (a replay) or a limit that refuses (which leaves the nonce unconsumed). One
-- row always comes back: whether the context was current (false: decide again on a fresh
-- read, nothing was written), the record's sequence number, and the limit that refused
-- (seq and refused both null with current true: a replay).
-- name: consume_challenge_and_audit_release_if_current
WITH current AS MATERIALIZED (
    SELECT k.name
    FROM (SELECT * FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1) k
    LEFT JOIN key_bindings b ON b.key_name = k.name
    LEFT JOIN LATERAL (
        SELECT name, version, digest FROM policies
        WHERE name = b.policy_name AND (b.policy_version IS NULL OR version = b.policy_version)
        ORDER BY version DESC LIMIT 1
    ) p ON true
    WHERE k.version = $2 AND k.state = $3 AND k.kek_label = $4
      AND coalesce(k.wrapped_blob, ''::bytea) = $5
      AND k.secret_length = $6
      AND p.name IS NOT DISTINCT FROM $7
      AND p.version IS NOT DISTINCT FROM $8
      AND p.digest IS NOT DISTINCT FROM $9
      AND k.exposure = $10
),
appended AS MATERIALIZED (
    SELECT a.seq, a.refused, a.found, a.retry_at
    FROM current, LATERAL audit_release_consume_append(
        $16, $17, $18, $11, $12, $13, $14, current.name, $15, $19, $20, $21, $22, $23, $24
    ) AS a
)
SELECT EXISTS (SELECT 1 FROM current) AS current,
       appended.seq, appended.refused, appended.found, appended.retry_at
FROM (VALUES (1)) AS one (n) LEFT JOIN appended ON true;

-- Every published version of one policy, oldest first, without its document.
-- name: policy_versions
SELECT name, version, digest, created_at, created_by
FROM policies WHERE name = $1 ORDER BY version;
