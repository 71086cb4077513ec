-- name: insert_challenge
INSERT INTO challenges (nonce, tee, expires_at) VALUES ($1, $2, $3);

-- Consume a nonce exactly once: the row lock taken by UPDATE makes concurrent consumers of
-- the same nonce wait, and all but the first then see consumed_at set and match no row.
-- name: consume_challenge
UPDATE challenges SET consumed_at = $3
WHERE nonce = $1 AND tee = $2 AND consumed_at IS NULL AND expires_at > $3
RETURNING nonce;

-- name: challenge_state
SELECT tee, expires_at, consumed_at FROM challenges WHERE nonce = $1;

-- name: purge_challenges
DELETE FROM challenges WHERE expires_at < $1;
