-- 0001: keys, challenges and the append-only, hash-chained audit log.

CREATE TABLE keys (
    name           text        NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,127}$'),
    version        integer     NOT NULL CHECK (version >= 1),
    kek_label      text        NOT NULL,
    wrapped_blob   bytea       NOT NULL,
    -- SoftHSM pads KWP input to a multiple of 8 and records the padded length; the true
    -- length lives here and travels with every release.
    secret_length  integer     NOT NULL CHECK (secret_length BETWEEN 1 AND 8192),
    state          text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE TABLE challenges (
    nonce        bytea       PRIMARY KEY CHECK (octet_length(nonce) = 32),
    tee          text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    consumed_at  timestamptz
);
CREATE INDEX challenges_expires_at ON challenges (expires_at);

-- Every record is hashed into a chain: hash = SHA-256(prev_hash || seq as 8 bytes big-endian
-- || record as UTF-8), with 32 zero bytes before the first record. `record` is the canonical
-- (RFC 8785) JSON text exactly as hashed; the other columns repeat some of its members for
-- queries and are checked against it by `keybroker audit verify`.
CREATE TABLE audit_log (
    seq         bigint      PRIMARY KEY,
    at          timestamptz NOT NULL,
    kind        text        NOT NULL,
    decision    text        NOT NULL,
    request_id  text,
    key_name    text,
    record      text        NOT NULL,
    prev_hash   bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (octet_length(hash) = 32)
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_key_name ON audit_log (key_name, seq);

-- The chain's head: the row lock serialises appends, and the tail cannot be cut silently.
CREATE TABLE audit_head (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq   bigint  NOT NULL,
    hash  bytea   NOT NULL CHECK (octet_length(hash) = 32)
);
INSERT INTO audit_head (id, seq, hash) VALUES (true, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Append one record; returns its sequence number and hash. One round trip per append.
CREATE FUNCTION audit_append(
    p_at timestamptz, p_kind text, p_decision text, p_request_id text, p_key_name text,
    p_record text
) RETURNS TABLE (seq bigint, hash bytea) LANGUAGE plpgsql AS $$
DECLARE
    head_seq  bigint;
    head_hash bytea;
    new_hash  bytea;
BEGIN
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_head h WHERE h.id FOR UPDATE;
    head_seq := head_seq + 1;
    new_hash := sha256(head_hash || int8send(head_seq) || convert_to(p_record, 'UTF8'));
    INSERT INTO audit_log (seq, at, kind, decision, request_id, key_name, record, prev_hash, hash)
        VALUES (head_seq, p_at, p_kind, p_decision, p_request_id, p_key_name, p_record,
                head_hash, new_hash);
    UPDATE audit_head SET seq = head_seq, hash = new_hash WHERE id;
    RETURN QUERY SELECT head_seq, new_hash;
END;
$$;
