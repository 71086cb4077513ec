CREATE FUNCTION public.audit_append(p_at timestamp with time zone, p_kind text, p_decision text, p_request_id text, p_key_name text, p_record text) RETURNS TABLE(seq bigint, hash bytea)
    LANGUAGE plpgsql
    AS $$
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
CREATE FUNCTION public.audit_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE FUNCTION public.audit_release_append(p_at timestamp with time zone, p_kind text, p_decision text, p_request_id text, p_key_name text, p_record text, p_instance text, p_max_releases bigint, p_once boolean, p_pin boolean, p_rate integer, p_per interval) RETURNS TABLE(seq bigint, refused text, found text, retry_at timestamp with time zone)
    LANGUAGE plpgsql
    AS $$
DECLARE
    counted      bigint;
    pinned       text;
    to_instance  bigint;
    window_times timestamptz[];
    per_instance boolean := coalesce(p_once, false) OR coalesce(p_pin, false)
                            OR p_rate IS NOT NULL;
BEGIN
    IF p_max_releases IS NOT NULL OR per_instance THEN
        INSERT INTO release_counts (key_name, started_at, updated_at)
            VALUES (p_key_name, p_at, p_at)
            ON CONFLICT (key_name) DO NOTHING;
        SELECT c.releases, c.pinned_instance INTO counted, pinned
            FROM release_counts c WHERE c.key_name = p_key_name FOR UPDATE;
        IF p_max_releases IS NOT NULL AND counted >= p_max_releases THEN
            RETURN QUERY SELECT NULL::bigint, 'max_releases'::text, counted::text,
                NULL::timestamptz;
            RETURN;
        END IF;
        IF per_instance THEN
            IF p_instance IS NULL THEN
                RAISE EXCEPTION 'per-instance release limits need the instance'
                    USING ERRCODE = 'null_value_not_allowed';
            END IF;
            IF p_pin AND pinned IS NOT NULL AND pinned <> p_instance THEN
                RETURN QUERY SELECT NULL::bigint, 'pin_to_first_instance'::text, pinned,
                    NULL::timestamptz;
                RETURN;
            END IF;
            SELECT i.releases, i.recent INTO to_instance, window_times
                FROM instance_release_counts i
                WHERE i.key_name = p_key_name AND i.instance = p_instance;
            IF p_once AND coalesce(to_instance, 0) > 0 THEN
                RETURN QUERY SELECT NULL::bigint, 'once_per_instance'::text, to_instance::text,
                    NULL::timestamptz;
                RETURN;
            END IF;
            IF p_rate IS NOT NULL THEN
                window_times := ARRAY(
                    SELECT t FROM unnest(coalesce(window_times, '{}')) AS t
                    WHERE t > p_at - p_per ORDER BY t
                );
                IF cardinality(window_times) >= p_rate THEN
                    RETURN QUERY SELECT NULL::bigint, 'rate_per_instance'::text,
                        cardinality(window_times)::text, window_times[1] + p_per;
                    RETURN;
                END IF;
                window_times := window_times || p_at;
            END IF;
            INSERT INTO instance_release_counts (key_name, instance, releases, recent, last_at)
                VALUES (p_key_name, p_instance, 1, coalesce(window_times, '{}'), p_at)
                ON CONFLICT (key_name, instance) DO UPDATE
                    recent = coalesce(window_times, instance_release_counts.recent),
                    last_at = p_at;
        END IF;
        UPDATE release_counts c
                pinned_instance = CASE WHEN p_pin AND c.pinned_instance IS NULL
                                       THEN p_instance ELSE c.pinned_instance END,
                updated_at = p_at
            WHERE c.key_name = p_key_name;
    END IF;
    RETURN QUERY SELECT a.seq, NULL::text, NULL::text, NULL::timestamptz
        FROM audit_append(p_at, p_kind, p_decision, p_request_id, p_key_name, p_record) AS a;
END;
$$;
CREATE FUNCTION public.audit_release_consume_append(p_nonce bytea, p_tee text, p_expires_at timestamp with time zone, p_at timestamp with time zone, p_kind text, p_decision text, p_request_id text, p_key_name text, p_record text, p_instance text, p_max_releases bigint, p_once boolean, p_pin boolean, p_rate integer, p_per interval) RETURNS TABLE(seq bigint, refused text, found text, retry_at timestamp with time zone)
    LANGUAGE plpgsql
    AS $$
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
CREATE FUNCTION public.policies_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'published policy versions are immutable: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TABLE public.admin_tokens (
    id text NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    secret_hash bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text NOT NULL,
    revoked_at timestamp with time zone,
    expires_at timestamp with time zone NOT NULL,
    replaced_by text,
    CONSTRAINT admin_tokens_role_check CHECK ((role = ANY (ARRAY['admin'::text, 'key-custodian'::text, 'policy-author'::text, 'auditor'::text]))),
    CONSTRAINT admin_tokens_secret_hash_check CHECK ((octet_length(secret_hash) = 32))
);
CREATE TABLE public.audit_head (
    id boolean DEFAULT true NOT NULL,
    seq bigint NOT NULL,
    hash bytea NOT NULL,
    CONSTRAINT audit_head_hash_check CHECK ((octet_length(hash) = 32)),
    CONSTRAINT audit_head_id_check CHECK (id)
);
CREATE TABLE public.audit_log (
    seq bigint NOT NULL,
    at timestamp with time zone NOT NULL,
    kind text NOT NULL,
    decision text NOT NULL,
    request_id text,
    key_name text,
    record text NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    CONSTRAINT audit_log_hash_check CHECK ((octet_length(hash) = 32)),
    CONSTRAINT audit_log_prev_hash_check CHECK ((octet_length(prev_hash) = 32))
);
CREATE TABLE public.challenges (
    nonce bytea NOT NULL,
    tee text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    consumed_at timestamp with time zone,
    CONSTRAINT challenges_nonce_check CHECK ((octet_length(nonce) = 32))
);
CREATE TABLE public.collateral (
    tee text NOT NULL,
    kind text NOT NULL,
    lookup_key text NOT NULL,
    body bytea NOT NULL,
    next_update timestamp with time zone,
    fetched_at timestamp with time zone DEFAULT now() NOT NULL,
    source text NOT NULL
);
CREATE TABLE public.import_wrapping_keys (
    id text NOT NULL,
    public_key bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    destroyed_at timestamp with time zone,
    CONSTRAINT import_wrapping_keys_check CHECK ((expires_at > created_at)),
    CONSTRAINT import_wrapping_keys_id_check CHECK ((id ~ '^[0-9a-f]{16}$'::text))
);
CREATE TABLE public.instance_release_counts (
    key_name text NOT NULL,
    instance text NOT NULL,
    releases bigint NOT NULL,
    recent timestamp with time zone[] DEFAULT '{}'::timestamp with time zone[] NOT NULL,
    last_at timestamp with time zone NOT NULL,
    CONSTRAINT instance_release_counts_releases_check CHECK ((releases >= 0))
);
CREATE TABLE public.kbs_paths (
    repository text NOT NULL,
    type text NOT NULL,
    tag text NOT NULL,
    key_name text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_by text NOT NULL,
    CONSTRAINT kbs_paths_repository_check CHECK ((repository ~ '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$'::text)),
    CONSTRAINT kbs_paths_tag_check CHECK ((tag ~ '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$'::text)),
    CONSTRAINT kbs_paths_type_check CHECK ((type ~ '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$'::text))
);
CREATE TABLE public.key_bindings (
    key_name text NOT NULL,
    policy_name text NOT NULL,
    policy_version integer,
    locked boolean DEFAULT false NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_by text NOT NULL,
    CONSTRAINT key_bindings_check CHECK (((NOT locked) OR (policy_version IS NOT NULL)))
);
CREATE TABLE public.key_deletions (
    key_name text NOT NULL,
    prior_state text NOT NULL,
    scheduled_at timestamp with time zone DEFAULT now() NOT NULL,
    scheduled_by text NOT NULL,
    destroy_after timestamp with time zone NOT NULL,
    destroyed_at timestamp with time zone,
    CONSTRAINT key_deletions_check CHECK ((destroy_after > scheduled_at)),
    CONSTRAINT key_deletions_prior_state_check CHECK ((prior_state = ANY (ARRAY['active'::text, 'disabled'::text])))
);
CREATE TABLE public.keys (
    name text NOT NULL,
    version integer NOT NULL,
    kek_label text NOT NULL,
    wrapped_blob bytea,
    secret_length integer NOT NULL,
    state text DEFAULT 'active'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    exposure text DEFAULT 'hsm-only'::text NOT NULL,
    created_by text DEFAULT 'unrecorded'::text NOT NULL,
    updated_by text DEFAULT 'unrecorded'::text NOT NULL,
    CONSTRAINT keys_blob_only_while_not_destroyed CHECK (((wrapped_blob IS NULL) = (state = 'destroyed'::text))),
    CONSTRAINT keys_exposure_check CHECK ((exposure = ANY (ARRAY['hsm-only'::text, 'broker-memory'::text]))),
    CONSTRAINT keys_name_check CHECK ((name ~ '^[a-z0-9][a-z0-9._-]{0,127}$'::text)),
    CONSTRAINT keys_secret_length_check CHECK (((secret_length >= 1) AND (secret_length <= 8192))),
    CONSTRAINT keys_state_check CHECK ((state = ANY (ARRAY['active'::text, 'disabled'::text, 'pending-deletion'::text, 'destroyed'::text]))),
    CONSTRAINT keys_version_check CHECK ((version >= 1))
);
CREATE TABLE public.kms_access_keys (
    id text NOT NULL,
    name text NOT NULL,
    kek_label text NOT NULL,
    wrapped_secret bytea NOT NULL,
    secret_length integer NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text NOT NULL,
    revoked_at timestamp with time zone,
    revoked_by text,
    CONSTRAINT kms_access_keys_id_check CHECK ((id ~ '^KB[A-Z2-7]{18}$'::text)),
    CONSTRAINT kms_access_keys_name_check CHECK ((name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'::text)),
    CONSTRAINT kms_access_keys_secret_length_check CHECK (((secret_length >= 1) AND (secret_length <= 128)))
);
CREATE TABLE public.kms_signatures (
    signature bytea NOT NULL,
    expires_at timestamp with time zone NOT NULL
);
CREATE TABLE public.policies (
    name text NOT NULL,
    version integer NOT NULL,
    document text NOT NULL,
    digest text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text NOT NULL,
    CONSTRAINT policies_digest_check CHECK ((digest ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT policies_name_check CHECK ((name ~ '^[a-z0-9][a-z0-9._-]{0,127}$'::text)),
    CONSTRAINT policies_version_check CHECK ((version >= 1))
);
CREATE TABLE public.release_counts (
    key_name text NOT NULL,
    releases bigint DEFAULT 0 NOT NULL,
    pinned_instance text,
    started_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    CONSTRAINT release_counts_releases_check CHECK ((releases >= 0))
);
CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
ALTER TABLE ONLY public.admin_tokens
    ADD CONSTRAINT admin_tokens_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.audit_head
    ADD CONSTRAINT audit_head_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (seq);
ALTER TABLE ONLY public.challenges
    ADD CONSTRAINT challenges_pkey PRIMARY KEY (nonce);
ALTER TABLE ONLY public.collateral
    ADD CONSTRAINT collateral_pkey PRIMARY KEY (tee, kind, lookup_key);
ALTER TABLE ONLY public.import_wrapping_keys
    ADD CONSTRAINT import_wrapping_keys_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.instance_release_counts
    ADD CONSTRAINT instance_release_counts_pkey PRIMARY KEY (key_name, instance);
ALTER TABLE ONLY public.kbs_paths
    ADD CONSTRAINT kbs_paths_key_name_key UNIQUE (key_name);
ALTER TABLE ONLY public.kbs_paths
    ADD CONSTRAINT kbs_paths_pkey PRIMARY KEY (repository, type, tag);
ALTER TABLE ONLY public.key_bindings
    ADD CONSTRAINT key_bindings_pkey PRIMARY KEY (key_name);
ALTER TABLE ONLY public.key_deletions
    ADD CONSTRAINT key_deletions_pkey PRIMARY KEY (key_name);
ALTER TABLE ONLY public.keys
    ADD CONSTRAINT keys_pkey PRIMARY KEY (name, version);
ALTER TABLE ONLY public.kms_access_keys
    ADD CONSTRAINT kms_access_keys_name_key UNIQUE (name);
ALTER TABLE ONLY public.kms_access_keys
    ADD CONSTRAINT kms_access_keys_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.kms_signatures
    ADD CONSTRAINT kms_signatures_pkey PRIMARY KEY (signature);
ALTER TABLE ONLY public.policies
    ADD CONSTRAINT policies_pkey PRIMARY KEY (name, version);
ALTER TABLE ONLY public.release_counts
    ADD CONSTRAINT release_counts_pkey PRIMARY KEY (key_name);
ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
CREATE INDEX audit_log_at ON public.audit_log USING btree (at);
CREATE INDEX audit_log_key_name ON public.audit_log USING btree (key_name, seq);
CREATE INDEX challenges_expires_at ON public.challenges USING btree (expires_at);
CREATE INDEX import_wrapping_keys_expiring ON public.import_wrapping_keys USING btree (expires_at) WHERE (destroyed_at IS NULL);
CREATE INDEX key_deletions_due ON public.key_deletions USING btree (destroy_after) WHERE (destroyed_at IS NULL);
CREATE INDEX kms_signatures_expiry ON public.kms_signatures USING btree (expires_at);
CREATE TRIGGER audit_log_append_only BEFORE DELETE OR UPDATE ON public.audit_log FOR EACH ROW EXECUTE FUNCTION public.audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON public.audit_log FOR EACH STATEMENT EXECUTE FUNCTION public.audit_refuse_change();
CREATE TRIGGER policies_immutable BEFORE DELETE OR UPDATE ON public.policies FOR EACH ROW EXECUTE FUNCTION public.policies_refuse_change();
CREATE TRIGGER policies_no_truncate BEFORE TRUNCATE ON public.policies FOR EACH STATEMENT EXECUTE FUNCTION public.policies_refuse_change();
ALTER TABLE ONLY public.admin_tokens
    ADD CONSTRAINT admin_tokens_replaced_by_fkey FOREIGN KEY (replaced_by) REFERENCES public.admin_tokens(id);
ALTER TABLE ONLY public.instance_release_counts
    ADD CONSTRAINT instance_release_counts_key_name_fkey FOREIGN KEY (key_name) REFERENCES public.release_counts(key_name);
ALTER TABLE ONLY public.key_bindings
    ADD CONSTRAINT key_bindings_policy_name_policy_version_fkey FOREIGN KEY (policy_name, policy_version) REFERENCES public.policies(name, version);
