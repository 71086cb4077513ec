-- 0008: wrapping keys for importing key material without plaintext (BYOK; docs/operations.md,
-- "Importing a key without its plaintext"). The private half is a token object labelled
-- keybroker-import-<id>; the database keeps its public half (DER SubjectPublicKeyInfo) and
-- when it stops being accepted. `destroyed_at` is set when the token object was destroyed.
CREATE TABLE import_wrapping_keys (
    id            text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    public_key    bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL,
    expires_at    timestamptz NOT NULL,
    destroyed_at  timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX import_wrapping_keys_expiring ON import_wrapping_keys (expires_at)
    WHERE destroyed_at IS NULL;
