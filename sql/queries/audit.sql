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
