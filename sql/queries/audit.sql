-- name: audit_append
SELECT seq, hash FROM audit_append($1, $2, $3, $4, $5, $6);

-- name: audit_head
SELECT seq, hash FROM audit_head WHERE id;

-- name: audit_range
SELECT seq, at, kind, decision, request_id, key_name, record, prev_hash, hash
FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2;

-- name: audit_tail
SELECT seq, at, kind, decision, request_id, key_name, record
FROM audit_log ORDER BY seq DESC LIMIT $1;

-- name: audit_counts
SELECT kind, count(*) AS records FROM audit_log GROUP BY kind;

-- Where a replay over history starts: the first record written at or after $1 (the `at`
-- index; records are appended nearly in `at` order, and the caller starts early enough for
-- the difference not to matter).
-- name: audit_history_start
SELECT seq FROM audit_log WHERE at >= $1 ORDER BY at LIMIT 1;

-- The attest records and the release records (of key $2, or of every key when null) from
-- seq $1 on, oldest first, $3 at a time: the stream a policy replay reads.
-- name: audit_history
SELECT seq, at, kind, decision, request_id, key_name, record FROM audit_log
WHERE seq >= $1 AND (kind = 'attest' OR (kind = 'release' AND ($2::text IS NULL OR key_name = $2)))
ORDER BY seq LIMIT $3;
