-- 0004: Trustee's KBS protocol (docs/kbs.md): where a key's secret may be while it is
-- released, and the KBS resource path a key answers at.

-- 'hsm-only': the secret never leaves the token unwrapped (the native release's envelope is
-- made inside the HSM). 'broker-memory': it may be in the broker's memory for the moment a
-- software envelope needs (the KBS JWE: A256GCM cannot be made inside a PKCS#11 2.40 token).
-- Per key, kept on every version row as `state` is, and inherited by new versions; keys
-- that existed before this migration, and new keys, are hsm-only until a key custodian
-- says otherwise (fail closed).
ALTER TABLE keys ADD COLUMN exposure text NOT NULL DEFAULT 'hsm-only'
    CHECK (exposure IN ('hsm-only', 'broker-memory'));

-- `repository/type/tag` of GET /kbs/v0/resource/<repository>/<type>/<tag>: each segment as
-- Trustee's resource plugin accepts it (its ResourceDesc pattern). A path names one key and
-- a key has at most one path; removing the path (or renaming nothing: keys are never
-- deleted) is the custodian's to do.
CREATE TABLE kbs_paths (
    repository  text        NOT NULL CHECK (repository ~ '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$'),
    type        text        NOT NULL CHECK (type ~ '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$'),
    tag         text        NOT NULL CHECK (tag ~ '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$'),
    key_name    text        NOT NULL UNIQUE,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL,
    PRIMARY KEY (repository, type, tag)
);
