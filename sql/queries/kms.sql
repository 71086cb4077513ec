-- name: insert_kms_access_key
INSERT INTO kms_access_keys (id, name, kek_label, wrapped_secret, secret_length, created_by)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: kms_access_key
SELECT id, name, kek_label, wrapped_secret, secret_length, revoked_at
FROM kms_access_keys WHERE id = $1;

-- name: list_kms_access_keys
SELECT id, name, created_at, created_by, revoked_at, revoked_by
FROM kms_access_keys ORDER BY created_at, id;

-- name: revoke_kms_access_key
UPDATE kms_access_keys SET revoked_at = now(), revoked_by = $2
WHERE id = $1 AND revoked_at IS NULL RETURNING id;

-- A signed request is accepted once: in one statement, the access key must still be live
-- (revocation takes effect for the next request on every worker) and its signature must not
-- have been recorded before. `live` and `fresh` are 0 or 1 each.
-- name: consume_kms_signature
WITH live AS (
    SELECT id FROM kms_access_keys WHERE id = $1 AND revoked_at IS NULL
), fresh AS (
    INSERT INTO kms_signatures (signature, expires_at)
    SELECT $2, $3 FROM live
    ON CONFLICT (signature) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM live) AS live, (SELECT count(*) FROM fresh) AS fresh;

-- name: purge_kms_signatures
DELETE FROM kms_signatures WHERE expires_at < $1;
