-- 0003: a published policy version never changes.
--
-- A release decides with the policy whose digest the key's context names, compiled once per
-- process and remembered by that digest (broker/release/policies.py), so the stored document
-- is read again only on a miss. A row whose document was edited under an unchanged digest
-- would be refused on a miss and evaluated as first published on a hit. Versions are
-- immutable by design (a new document is a new version); the database now refuses the edit,
-- as it refuses changes to the audit log, so that a cached policy and a stored one cannot
-- differ short of someone disabling this trigger.
CREATE FUNCTION policies_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'published policy versions are immutable: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER policies_immutable
    BEFORE UPDATE OR DELETE ON policies
    FOR EACH ROW EXECUTE FUNCTION policies_refuse_change();

CREATE TRIGGER policies_no_truncate
    BEFORE TRUNCATE ON policies
    FOR EACH STATEMENT EXECUTE FUNCTION policies_refuse_change();
