-- A new version inherits the key's state and exposure: adding a version to a disabled key
-- must not enable it again, nor loosen where its secret may be (each is its own, audited
-- action). A new key is active and hsm-only.
-- $6 is the actor, recorded as who created (and last changed) the version.
-- name: insert_key
INSERT INTO keys (name, version, kek_label, wrapped_blob, secret_length, state, exposure,
                  created_by, updated_by)
SELECT $1, $2, $3, $4, $5, coalesce(latest.state, 'active'), coalesce(latest.exposure, 'hsm-only'),
       $6, $6
FROM (SELECT 1) one
LEFT JOIN (SELECT state, exposure FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1) latest
    ON true
RETURNING name, version, kek_label, secret_length, state, exposure, created_at, updated_at,
    created_by, updated_by,
    (SELECT repository || '/' || type || '/' || tag FROM kbs_paths WHERE key_name = $1)
    AS kbs_path,
    (SELECT policy_name FROM key_bindings WHERE key_name = $1) AS policy_name,
    (SELECT policy_version FROM key_bindings WHERE key_name = $1) AS policy_version,
    coalesce((SELECT locked FROM key_bindings WHERE key_name = $1), false) AS locked,
    NULL::timestamptz AS destroy_after;

-- name: next_key_version
SELECT coalesce(max(version), 0) + 1 FROM keys WHERE name = $1;

-- One version's sealed blob (null once destroyed): a KMS Decrypt of a ciphertext made under
-- an older version.
-- name: key_version
SELECT name, version, kek_label, wrapped_blob, secret_length, state, created_at, updated_at
FROM keys WHERE name = $1 AND version = $2;

-- A key as `keys list` and `keys show` describe it: its newest version, with its binding
-- (a null policy_version follows the newest version) and when a scheduled deletion is due.
-- name: latest_key
SELECT k.name, k.version, k.kek_label, k.secret_length, k.state, k.exposure,
       k.created_at, k.updated_at, k.created_by, k.updated_by,
       p.repository || '/' || p.type || '/' || p.tag AS kbs_path,
       b.policy_name, b.policy_version, coalesce(b.locked, false) AS locked,
       d.destroy_after
FROM (SELECT * FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1) k
LEFT JOIN kbs_paths p ON p.key_name = k.name
LEFT JOIN key_bindings b ON b.key_name = k.name
LEFT JOIN key_deletions d ON d.key_name = k.name;

-- Every version of a key, oldest first, without its blob.
-- name: key_versions
SELECT version, kek_label, secret_length, state, created_at, created_by, updated_at, updated_by
FROM keys WHERE name = $1 ORDER BY version;

-- name: key_deletion
SELECT prior_state, scheduled_at, scheduled_by, destroy_after, destroyed_at
FROM key_deletions WHERE key_name = $1;

-- name: list_keys
SELECT k.name, k.version, k.kek_label, k.secret_length, k.state, k.exposure,
       k.created_at, k.updated_at, k.created_by, k.updated_by,
       p.repository || '/' || p.type || '/' || p.tag AS kbs_path,
       b.policy_name, b.policy_version, coalesce(b.locked, false) AS locked,
       d.destroy_after
FROM (SELECT DISTINCT ON (name) * FROM keys ORDER BY name, version DESC) k
LEFT JOIN kbs_paths p ON p.key_name = k.name
LEFT JOIN key_bindings b ON b.key_name = k.name
LEFT JOIN key_deletions d ON d.key_name = k.name
ORDER BY k.name;

-- The newest version's state, its rows locked until the caller's transaction ends: every
-- change of state (enable, disable, schedule or cancel a deletion, destroy) reads it first.
-- name: lock_key_state
SELECT state FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1 FOR UPDATE;

-- name: set_key_state
UPDATE keys SET state = $2, updated_at = now(), updated_by = $3 WHERE name = $1 RETURNING version;

-- name: set_key_exposure
UPDATE keys SET exposure = $2, updated_at = now(), updated_by = $3
WHERE name = $1 RETURNING version;

-- name: insert_key_deletion
INSERT INTO key_deletions (key_name, prior_state, scheduled_at, scheduled_by, destroy_after)
VALUES ($1, $2, $3, $4, $5);

-- name: cancel_key_deletion
DELETE FROM key_deletions WHERE key_name = $1 AND destroyed_at IS NULL RETURNING prior_state;

-- Whether any deletion is due at $1: the periodic sweep's one statement when none is.
-- name: key_deletion_due
SELECT EXISTS (SELECT 1 FROM key_deletions WHERE destroyed_at IS NULL AND destroy_after <= $1);

-- Deletions due at $1, locked; SKIP LOCKED lets several brokers run the sweep at once, each
-- destroying other keys.
-- name: due_key_deletions
SELECT key_name, destroy_after FROM key_deletions
WHERE destroyed_at IS NULL AND destroy_after <= $1
ORDER BY destroy_after LIMIT $2
FOR UPDATE SKIP LOCKED;

-- Crypto-shredding: every sealed blob of the key is gone; the rows stay as its history.
-- name: destroy_key_blobs
UPDATE keys SET wrapped_blob = NULL, state = 'destroyed', updated_at = now(), updated_by = $2
WHERE name = $1 RETURNING version, kek_label;

-- name: mark_key_destroyed
UPDATE key_deletions SET destroyed_at = $2 WHERE key_name = $1;

-- The key that answers at a KBS resource path; none when no key does.
-- name: kbs_path_key
SELECT key_name FROM kbs_paths WHERE repository = $1 AND type = $2 AND tag = $3;

-- name: delete_kbs_path
DELETE FROM kbs_paths WHERE key_name = $1 RETURNING repository;

-- name: insert_kbs_path
INSERT INTO kbs_paths (repository, type, tag, key_name, updated_by)
VALUES ($1, $2, $3, $4, $5);

-- Every key version's wrapped blob with the KEK label it is wrapped under (the token repair
-- keeps, of two KEKs under one label, the one that unwraps them all).
-- name: wrapped_blobs
SELECT kek_label, wrapped_blob FROM keys ORDER BY kek_label, name, version;
