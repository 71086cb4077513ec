-- name: collateral_get
SELECT body, next_update, fetched_at, source FROM collateral
WHERE tee = $1 AND kind = $2 AND lookup_key = $3;

-- name: collateral_put
INSERT INTO collateral (tee, kind, lookup_key, body, next_update, source)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tee, kind, lookup_key) DO UPDATE
SET body = EXCLUDED.body, next_update = EXCLUDED.next_update, fetched_at = now(),
    source = EXCLUDED.source;

-- name: collateral_list
SELECT tee, kind, lookup_key, next_update, fetched_at, source, octet_length(body) AS size
FROM collateral ORDER BY tee, kind, lookup_key;

-- name: collateral_get_many
-- Several items in one round trip: $1, $2, $3 are parallel arrays of tee, kind, lookup_key.
SELECT c.tee, c.kind, c.lookup_key, c.body, c.next_update, c.fetched_at, c.source
FROM collateral c
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (tee, kind, lookup_key)
  ON c.tee = k.tee AND c.kind = k.kind AND c.lookup_key = k.lookup_key;

-- How many items the store holds by tee and kind, fresh and stale at $1 (stale: past its
-- nextUpdate): the metrics' view of the cache.
-- name: collateral_state
SELECT tee, kind,
       count(*) FILTER (WHERE next_update IS NULL OR next_update >= $1) AS fresh,
       count(*) FILTER (WHERE next_update < $1) AS stale
FROM collateral GROUP BY tee, kind ORDER BY tee, kind;
