-- Consumed nonces only: nonces are issued without a row (broker/release/nonces.py). A row is
-- written when an attestation consumes its nonce; `created_at` (PostgreSQL's clock) is then
-- the moment of that write and `consumed_at` the broker's instant of the attestation, the
-- audit record's `at`. `expires_at` is the expiry the nonce itself carries.

-- name: purge_challenges
DELETE FROM challenges WHERE expires_at < $1;

-- Consume a nonce exactly once and append the attestation's audit record in one statement:
-- one round trip and one implicit transaction, so the audit head's row lock is held only
-- while PostgreSQL commits, never while the broker is busy elsewhere. The lateral reference to
-- `consumed` makes audit_append run once per inserted row: when the nonce was consumed
-- before, the insert conflicts, no row comes back and nothing is appended (the caller then
-- audits the refusal as a replay). Of concurrent inserts of one nonce, all but the first
-- wait for it to commit and then conflict (or insert, if it rolled back).
-- name: consume_challenge_and_audit
WITH consumed AS (
    INSERT INTO challenges (nonce, tee, expires_at, consumed_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (nonce) DO NOTHING
    RETURNING consumed_at
)
SELECT appended.seq
FROM consumed, LATERAL audit_append(consumed.consumed_at, $5, $6, $7, $8, $9) AS appended;
