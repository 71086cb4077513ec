-- A new version inherits the key's state and exposure: adding a version to a disabled key
-- must not enable it again, nor loosen where its secret may be (each is its own, audited
-- action). A new key is active and hsm-only.
-- name: insert_key
INSERT INTO keys (name, version, kek_label, wrapped_blob, secret_length, state, exposure)
SELECT $1, $2, $3, $4, $5, coalesce(latest.state, 'active'), coalesce(latest.exposure, 'hsm-only')
FROM (SELECT 1) one
LEFT JOIN (SELECT state, exposure FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1) latest
    ON true
RETURNING name, version, kek_label, secret_length, state, exposure, created_at, updated_at,
    (SELECT repository || '/' || type || '/' || tag FROM kbs_paths WHERE key_name = $1)
    AS kbs_path;

-- name: next_key_version
SELECT coalesce(max(version), 0) + 1 FROM keys WHERE name = $1;

-- name: latest_key
SELECT k.name, k.version, k.kek_label, k.wrapped_blob, k.secret_length, k.state, k.exposure,
       k.created_at, k.updated_at, p.repository || '/' || p.type || '/' || p.tag AS kbs_path
FROM (SELECT * FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1) k
LEFT JOIN kbs_paths p ON p.key_name = k.name;

-- name: key_version
SELECT name, version, kek_label, wrapped_blob, secret_length, state, created_at, updated_at
FROM keys WHERE name = $1 AND version = $2;

-- name: list_keys
SELECT k.name, k.version, k.kek_label, k.secret_length, k.state, k.exposure, k.created_at,
       k.updated_at, p.repository || '/' || p.type || '/' || p.tag AS kbs_path
FROM (SELECT DISTINCT ON (name) * FROM keys ORDER BY name, version DESC) k
LEFT JOIN kbs_paths p ON p.key_name = k.name
ORDER BY k.name;

-- name: set_key_state
UPDATE keys SET state = $2, updated_at = now() WHERE name = $1 RETURNING version;

-- name: set_key_exposure
UPDATE keys SET exposure = $2, updated_at = now() WHERE name = $1 RETURNING version;

-- The key that answers at a KBS resource path; none when no key does.
-- name: kbs_path_key
SELECT key_name FROM kbs_paths WHERE repository = $1 AND type = $2 AND tag = $3;

-- name: delete_kbs_path
DELETE FROM kbs_paths WHERE key_name = $1 RETURNING repository;

-- name: insert_kbs_path
INSERT INTO kbs_paths (repository, type, tag, key_name, updated_by)
VALUES ($1, $2, $3, $4, $5);
