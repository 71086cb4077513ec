-- A new version inherits the key's state: adding a version to a disabled key must not
-- enable it again (enabling is its own, audited action).
-- name: insert_key
INSERT INTO keys (name, version, kek_label, wrapped_blob, secret_length, state)
VALUES ($1, $2, $3, $4, $5, coalesce(
    (SELECT state FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1), 'active'))
RETURNING name, version, kek_label, secret_length, state, created_at, updated_at;

-- name: next_key_version
SELECT coalesce(max(version), 0) + 1 FROM keys WHERE name = $1;

-- name: latest_key
SELECT name, version, kek_label, wrapped_blob, secret_length, state, created_at, updated_at
FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1;

-- name: key_version
SELECT name, version, kek_label, wrapped_blob, secret_length, state, created_at, updated_at
FROM keys WHERE name = $1 AND version = $2;

-- name: list_keys
SELECT DISTINCT ON (name) name, version, kek_label, secret_length, state, created_at, updated_at
FROM keys ORDER BY name, version DESC;

-- name: set_key_state
UPDATE keys SET state = $2, updated_at = now() WHERE name = $1 RETURNING version;
