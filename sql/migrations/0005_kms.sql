-- 0005: the KMS-compatible endpoint (docs/kms.md): the access keys that sign its requests
-- (AWS Signature Version 4), and the signatures already used, so that a request replayed
-- within the clock-skew window is refused on every worker and replica.

-- An admin issues and revokes access keys. SigV4 is an HMAC keyed by the secret itself, so
-- the broker must be able to read it back: it is sealed under the token's KEK (RFC 5649 key
-- wrap inside the HSM) like a customer key, never stored in clear or logged. Rows are never
-- deleted, so a name and an id are never reused; a revoked key signs nothing.
CREATE TABLE kms_access_keys (
    id              text        PRIMARY KEY CHECK (id ~ '^KB[A-Z2-7]{18}$'),
    name            text        NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    kek_label       text        NOT NULL,
    wrapped_secret  bytea       NOT NULL,
    secret_length   integer     NOT NULL CHECK (secret_length BETWEEN 1 AND 128),
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text        NOT NULL,
    revoked_at      timestamptz,
    revoked_by      text
);

-- One row per accepted signature until its request time falls out of the skew window (then
-- the request would be refused as expired anyway); purged with the challenges.
CREATE TABLE kms_signatures (
    signature   bytea       PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX kms_signatures_expiry ON kms_signatures (expires_at);
