-- name: insert_admin_token
INSERT INTO admin_tokens (id, name, role, secret_hash, created_by, expires_at)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: admin_token
SELECT id, name, role, secret_hash, revoked_at, expires_at FROM admin_tokens WHERE id = $1;

-- The token a rotation replaces, locked until the rotation's transaction ends.
-- name: admin_token_for_rotation
SELECT id, name, role, revoked_at FROM admin_tokens WHERE id = $1 FOR UPDATE;

-- name: replace_admin_token
UPDATE admin_tokens SET revoked_at = now(), replaced_by = $2 WHERE id = $1;

-- name: list_admin_tokens
SELECT id, name, role, created_at, created_by, expires_at, revoked_at, replaced_by
FROM admin_tokens ORDER BY created_at;

-- name: revoke_admin_token
UPDATE admin_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id;

-- Serialises every change to the broker's objects on the token across the processes sharing
-- the database (brokers, the CLI): KEK rotation, first-time provisioning and its repair. Two
-- at once would each create the same label on the token (two rotations the same next KEK;
-- two replicas starting on a fresh token the first KEK, signing key and nonce key), and every
-- process then refuses to start (a label naming two objects). Held until the transaction ends.
-- name: lock_token_objects
SELECT pg_advisory_xact_lock(7021908653510341635);
