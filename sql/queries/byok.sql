-- name: insert_import_wrapping_key
INSERT INTO import_wrapping_keys (id, public_key, created_at, created_by, expires_at)
VALUES ($1, $2, $3, $4, $5);

-- name: import_wrapping_key
SELECT id, expires_at, destroyed_at FROM import_wrapping_keys WHERE id = $1;

-- Wrapping keys past their expiry at $1 whose token object is still to be destroyed, locked;
-- SKIP LOCKED lets several brokers sweep at once.
-- name: expired_import_wrapping_keys
SELECT id FROM import_wrapping_keys
WHERE destroyed_at IS NULL AND expires_at <= $1
ORDER BY expires_at LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: import_wrapping_key_expiry_due
SELECT EXISTS (
    SELECT 1 FROM import_wrapping_keys WHERE destroyed_at IS NULL AND expires_at <= $1
);

-- name: mark_import_wrapping_key_destroyed
UPDATE import_wrapping_keys SET destroyed_at = $2 WHERE id = $1;
