-- name: audit_append
SELECT seq, hash FROM audit_append($1, $2, $3, $4, $5, $6);

-- name: audit_head
SELECT seq, hash FROM audit_head WHERE id;

-- name: audit_range
SELECT seq, at, kind, decision, request_id, key_name, record, prev_hash, hash
FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2;

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

-- Records in sequence order after $1 and before $2 (null: no bound), each filter null for
-- none: $3 key name, $4 decision, $5 kind, $6 request id, $7 actor (the record's `actor`),
-- $8 at or after, $9 before; at most $10. audit_search_newest is the same, newest first.
-- name: audit_search
SELECT seq, at, kind, decision, request_id, key_name, record, hash FROM audit_log
WHERE seq > $1 AND ($2::bigint IS NULL OR seq < $2)
  AND ($3::text IS NULL OR key_name = $3) AND ($4::text IS NULL OR decision = $4)
  AND ($5::text IS NULL OR kind = $5) AND ($6::text IS NULL OR request_id = $6)
  AND ($7::text IS NULL OR (record::jsonb) ->> 'actor' = $7)
  AND ($8::timestamptz IS NULL OR at >= $8) AND ($9::timestamptz IS NULL OR at < $9)
ORDER BY seq LIMIT $10;

-- name: audit_search_newest
SELECT seq, at, kind, decision, request_id, key_name, record, hash FROM audit_log
WHERE seq > $1 AND ($2::bigint IS NULL OR seq < $2)
  AND ($3::text IS NULL OR key_name = $3) AND ($4::text IS NULL OR decision = $4)
  AND ($5::text IS NULL OR kind = $5) AND ($6::text IS NULL OR request_id = $6)
  AND ($7::text IS NULL OR (record::jsonb) ->> 'actor' = $7)
  AND ($8::timestamptz IS NULL OR at >= $8) AND ($9::timestamptz IS NULL OR at < $9)
ORDER BY seq DESC LIMIT $10;

-- The first record written at or after $1, with the hash it links to: where a check of the
-- chain from that time starts.
-- name: audit_first_since
SELECT seq, prev_hash FROM audit_log
WHERE seq = (SELECT min(seq) FROM audit_log WHERE at >= $1);

-- name: audit_record
SELECT seq, at, kind, decision, request_id, key_name, record
FROM audit_log WHERE seq = $1;

-- Releases per time bucket ($3, an interval; buckets aligned to $1), key, decision and
-- reason, written in [$1, $2), of key $4 or of every key when null. The reason is the
-- refusal's problem type, and for a policy's denial the rule of its first failed clause.
-- Reads the index on `at`; the console's windows are at most 30 days.
-- name: release_activity
SELECT date_bin($3, at, $1) AS bucket, coalesce(key_name, '') AS key_name, decision,
       CASE WHEN decision = 'allow' THEN ''
            ELSE coalesce(record::jsonb #>> '{error,type}', '') ||
                 coalesce(': ' || (record::jsonb #>> '{reasons,0,rule}'), '')
       END AS reason,
       count(*) AS releases
FROM audit_log
WHERE kind = 'release' AND at >= $1 AND at < $2 AND ($4::text IS NULL OR key_name = $4)
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4;

-- The attestation that issued token $1: an allowed attest record written in [$2, $3] (the
-- release's instant less a token's lifetime, and the release's instant), read by `at`.
-- name: audit_attestation_of_token
SELECT seq, record FROM audit_log
WHERE kind = 'attest' AND decision = 'allow' AND at >= $2 AND at <= $3
  AND record::jsonb ->> 'token_id' = $1
ORDER BY seq DESC LIMIT 1;
