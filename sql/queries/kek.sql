-- Takers of the KEK rotation lock in shared mode: a key version being stored checks, under
-- it, that the KEK it was sealed under is still on the token, so a retirement (which takes
-- the lock exclusively and then refuses while any version is sealed under its KEK) cannot
-- slip between the sealing and the insert. Held until the transaction ends.
-- name: lock_kek_rotation_shared
SELECT pg_advisory_xact_lock_shared(7021908653510341635);

-- How many stored key versions each KEK seals (destroyed versions have no blob: none).
-- name: kek_usage
SELECT kek_label, count(*) AS versions FROM keys WHERE wrapped_blob IS NOT NULL
GROUP BY kek_label ORDER BY kek_label;

-- The next key versions not sealed under $1, after ($2, $3) in (name, version) order: the
-- re-wrap walks the primary key once, in batches of $4.
-- name: key_versions_to_rewrap
SELECT name, version, kek_label, wrapped_blob, secret_length FROM keys
WHERE kek_label <> $1 AND wrapped_blob IS NOT NULL AND (name, version) > ($2, $3)
ORDER BY name, version LIMIT $4;

-- Store re-sealed blobs, each only if its version still holds the blob that was re-sealed
-- (a version destroyed meanwhile keeps its null): $1..$4 name, version, old and new blob
-- arrays; $5 the new KEK label. The versions updated.
-- name: store_rewrapped
UPDATE keys k SET wrapped_blob = n.blob, kek_label = $5
FROM unnest($1::text[], $2::integer[], $3::bytea[], $4::bytea[]) AS n(name, version, old, blob)
WHERE k.name = n.name AND k.version = n.version AND k.wrapped_blob = n.old
RETURNING k.name, k.version;

-- How many KMS access keys' secrets each KEK seals (revoked ones too: their rows stay, and
-- a KEK is retired only once nothing at all is sealed under it).
-- name: kek_access_key_usage
SELECT kek_label, count(*) AS access_keys FROM kms_access_keys
GROUP BY kek_label ORDER BY kek_label;

-- The KMS access keys whose secret is not sealed under $1: few enough for one batch.
-- name: access_keys_to_rewrap
SELECT id, kek_label, wrapped_secret, secret_length FROM kms_access_keys
WHERE kek_label <> $1 ORDER BY id;

-- Store re-sealed access-key secrets, each only if the row still holds the one re-sealed:
-- $1..$3 id, old and new secret arrays; $4 the new KEK label. The ids updated.
-- name: store_rewrapped_access_keys
UPDATE kms_access_keys a SET wrapped_secret = n.secret, kek_label = $4
FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS n(id, old, secret)
WHERE a.id = n.id AND a.wrapped_secret = n.old
RETURNING a.id;
