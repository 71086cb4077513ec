-- 0006: release limits (docs/policies.md, "Release limits"): the counters a policy's
-- `limits` are enforced with, taken in the statement that appends the release's audit
-- record (audit_release_if_current), so a release is counted exactly when its record commits.

-- One row per key released under a policy that states limits. `releases` counts those
-- releases (counting starts with the first one: releases decided by a policy without limits
-- are not counted); `pinned_instance` is the instance of the first release decided under
-- pin_to_first_instance. The row's lock serialises the limited releases of one key.
CREATE TABLE release_counts (
    key_name         text        PRIMARY KEY,
    releases         bigint      NOT NULL DEFAULT 0 CHECK (releases >= 0),
    pinned_instance  text,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Per key and instance (`<tee>:<claim>:<hex>`, broker/policy/limits.py), written only under
-- a per-instance rule: how many releases the instance received, and the instants of its
-- latest ones within the rate window (at most rate_per_instance.releases of them).
CREATE TABLE instance_release_counts (
    key_name  text          NOT NULL REFERENCES release_counts (key_name),
    instance  text          NOT NULL,
    releases  bigint        NOT NULL CHECK (releases >= 0),
    recent    timestamptz[] NOT NULL DEFAULT '{}',
    last_at   timestamptz   NOT NULL,
    PRIMARY KEY (key_name, instance)
);

-- Append a release's audit record, after taking the key's limits when the policy states
-- any (p_max_releases, p_once, p_pin, p_rate with p_per; all null or false: no limit, and
-- this is audit_append). A limit that refuses appends nothing, counts nothing and returns
-- its rule, what the counters held (`found`) and, for the rate, when the oldest release in
-- the window leaves it; else the counters move and the record is appended in the same
-- transaction, and `seq` is its sequence number. Locks, always in this order: the key's
-- counter row, its instance row (guarded by the key's), the audit chain's head. Each
-- statement of a volatile PL/pgSQL function takes a fresh snapshot under READ COMMITTED,
-- so a release waiting for the key's row reads the counts that the one before it committed.
CREATE FUNCTION audit_release_append(
    p_at timestamptz, p_kind text, p_decision text, p_request_id text, p_key_name text,
    p_record text, p_instance text, p_max_releases bigint, p_once boolean, p_pin boolean,
    p_rate integer, p_per interval
) RETURNS TABLE (seq bigint, refused text, found text, retry_at timestamptz)
LANGUAGE plpgsql AS $$
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
                SET releases = instance_release_counts.releases + 1,
                    recent = coalesce(window_times, instance_release_counts.recent),
                    last_at = p_at;
        END IF;
        UPDATE release_counts c
            SET releases = c.releases + 1,
                pinned_instance = CASE WHEN p_pin AND c.pinned_instance IS NULL
                                       THEN p_instance ELSE c.pinned_instance END,
                updated_at = p_at
            WHERE c.key_name = p_key_name;
    END IF;
    RETURN QUERY SELECT a.seq, NULL::text, NULL::text, NULL::timestamptz
        FROM audit_append(p_at, p_kind, p_decision, p_request_id, p_key_name, p_record) AS a;
END;
$$;
