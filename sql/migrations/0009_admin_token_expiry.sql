-- 0009: admin tokens expire (docs/api.md, "The admin API"). Tokens made before this
-- migration get 90 days from it, the default lifetime of a new token.
ALTER TABLE admin_tokens ADD COLUMN expires_at timestamptz;
UPDATE admin_tokens SET expires_at = now() + interval '90 days';
ALTER TABLE admin_tokens ALTER COLUMN expires_at SET NOT NULL;
-- The token that replaced this one when it was rotated (revoked at the same moment).
ALTER TABLE admin_tokens ADD COLUMN replaced_by text REFERENCES admin_tokens (id);
