-- name: insert_challenge
INSERT INTO challenges (nonce, tee, expires_at) VALUES ($1, $2, $3);

-- name: challenge_state
SELECT tee, expires_at, consumed_at FROM challenges WHERE nonce = $1;

-- name: purge_challenges
DELETE FROM challenges WHERE expires_at < $1;

-- Consume a nonce exactly once and append the attestation's audit record in one statement:
-- one round trip and one implicit transaction, so the audit head's row lock is held only
-- while PostgreSQL commits, never while the broker is busy elsewhere. The lateral reference to
-- `consumed` makes audit_append run once per consumed row: when the nonce cannot be
-- consumed, no row comes back and nothing is appended (the caller then audits the refusal).
-- The row lock taken by UPDATE makes concurrent consumers of the same nonce wait, and all
-- but the first then see consumed_at set and match no row.
-- name: consume_challenge_and_audit
WITH consumed AS (
    UPDATE challenges SET consumed_at = $3
    WHERE nonce = $1 AND tee = $2 AND consumed_at IS NULL AND expires_at > $3
    RETURNING consumed_at
)
SELECT appended.seq
FROM consumed, LATERAL audit_append(consumed.consumed_at, $4, $5, $6, $7, $8) AS appended;
