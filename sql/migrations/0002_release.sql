-- 0002: release policies, key-to-policy bindings, admin tokens, the collateral cache.

-- A policy name has immutable versions; `document` is the canonical JSON of the policy as
-- published and `digest` its SHA-256, which every release decision records.
CREATE TABLE policies (
    name        text        NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,127}$'),
    version     integer     NOT NULL CHECK (version >= 1),
    document    text        NOT NULL,
    digest      text        NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL,
    PRIMARY KEY (name, version)
);

-- Which policy decides releases of a key. `policy_version` null follows the newest version;
-- `locked` refuses any later change of the binding (and pins the version it was locked at).
CREATE TABLE key_bindings (
    key_name        text        PRIMARY KEY,
    policy_name     text        NOT NULL,
    policy_version  integer,
    locked          boolean     NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text        NOT NULL,
    FOREIGN KEY (policy_name, policy_version) REFERENCES policies (name, version),
    CHECK (NOT locked OR policy_version IS NOT NULL)
);

CREATE TABLE admin_tokens (
    id          text        PRIMARY KEY,
    name        text        NOT NULL,
    role        text        NOT NULL
                CHECK (role IN ('admin', 'key-custodian', 'policy-author', 'auditor')),
    -- SHA-256 of the token's secret part; the token itself is shown once and never stored.
    secret_hash bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL,
    revoked_at  timestamptz
);

-- Endorsements and collateral fetched from vendor services (AMD KDS, Intel PCS) or imported
-- by hand, keyed by what identifies them (chip id and TCB, FMSPC...). `next_update` is when
-- the issuer promises fresher data (Intel); null means the item does not go stale (a VCEK).
CREATE TABLE collateral (
    tee          text        NOT NULL,
    kind         text        NOT NULL,
    lookup_key   text        NOT NULL,
    body         bytea       NOT NULL,
    next_update  timestamptz,
    fetched_at   timestamptz NOT NULL DEFAULT now(),
    source       text        NOT NULL,
    PRIMARY KEY (tee, kind, lookup_key)
);
