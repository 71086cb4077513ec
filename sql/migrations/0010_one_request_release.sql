-- 0007: the one-request attested release (docs/api.md): its nonce is consumed in the very
-- statement that takes the key's release limits (migration 0006) and appends its one record,
-- so a replay on any worker or replica writes nothing, and a release is counted exactly
-- when the record of its attestation and release commits.

-- Consume p_nonce (issued for p_tee, live until p_expires_at; consumed at p_at), then take
-- the key's limits and append the record as audit_release_append does (its parameters
-- follow). A nonce consumed before returns no row, having written nothing: a replay. A limit
-- that refuses returns its row (rule, found, retry_at) and leaves the nonce unconsumed, as
-- if the statement had not run, so that the denial it causes is committed with the nonce in
-- turn (a racer that presents the same nonce meanwhile waits on its row lock, then finds it
-- free and is decided on its own).
CREATE FUNCTION audit_release_consume_append(
    p_nonce bytea, p_tee text, p_expires_at timestamptz,
    p_at timestamptz, p_kind text, p_decision text, p_request_id text, p_key_name text,
    p_record text, p_instance text, p_max_releases bigint, p_once boolean, p_pin boolean,
    p_rate integer, p_per interval
) RETURNS TABLE (seq bigint, refused text, found text, retry_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    taken record;
BEGIN
    INSERT INTO challenges (nonce, tee, expires_at, consumed_at)
        VALUES (p_nonce, p_tee, p_expires_at, p_at)
        ON CONFLICT (nonce) DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO taken FROM audit_release_append(
        p_at, p_kind, p_decision, p_request_id, p_key_name, p_record, p_instance,
        p_max_releases, p_once, p_pin, p_rate, p_per
    );
    IF taken.seq IS NULL THEN
        DELETE FROM challenges c WHERE c.nonce = p_nonce;
    END IF;
    RETURN QUERY SELECT taken.seq, taken.refused, taken.found, taken.retry_at;
END;
$$;
