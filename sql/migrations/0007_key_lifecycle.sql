-- 0007: who made and changed each key version, and scheduled deletion (docs/operations.md,
-- "Deleting a key").

-- 'pending-deletion': scheduled for destruction; refused like a disabled key, and nothing
-- about it may change but the cancellation. 'destroyed': its sealed blob is gone (set to
-- null), so no KEK can ever unwrap it again; the row stays as the key's history and keeps
-- its name from being given to another key (an audit record names one key, ever).
ALTER TABLE keys DROP CONSTRAINT keys_state_check;
ALTER TABLE keys ADD CONSTRAINT keys_state_check
    CHECK (state IN ('active', 'disabled', 'pending-deletion', 'destroyed'));
ALTER TABLE keys ALTER COLUMN wrapped_blob DROP NOT NULL;
ALTER TABLE keys ADD CONSTRAINT keys_blob_only_while_not_destroyed
    CHECK ((wrapped_blob IS NULL) = (state = 'destroyed'));

-- Versions made before this migration did not record their actor.
ALTER TABLE keys ADD COLUMN created_by text NOT NULL DEFAULT 'unrecorded';
ALTER TABLE keys ADD COLUMN updated_by text NOT NULL DEFAULT 'unrecorded';

-- One row per key scheduled for deletion. `prior_state` is what cancelling restores;
-- `destroyed_at` is set when the blobs were destroyed (the row then stays, as history).
CREATE TABLE key_deletions (
    key_name      text        PRIMARY KEY,
    prior_state   text        NOT NULL CHECK (prior_state IN ('active', 'disabled')),
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    scheduled_by  text        NOT NULL,
    destroy_after timestamptz NOT NULL,
    destroyed_at  timestamptz,
    CHECK (destroy_after > scheduled_at)
);
CREATE INDEX key_deletions_due ON key_deletions (destroy_after) WHERE destroyed_at IS NULL;
