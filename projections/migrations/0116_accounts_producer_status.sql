-- Projection accounts: producers show revocations and key rotations (fold version 2).
-- status is ACTIVE or REVOKED (ProducerRevoked: revoked_at, revoked_by, revoke_reason,
-- kept as the last revocation once a rotation brings the producer back); a
-- ProducerKeyRotated sets public_key, keeps the replaced key in previous_key, counts
-- key_rotations and stamps rotated_at. event_id is the producer's last fact. Every fact
-- is also a row of account_events (account NULL). Rows folded before this migration
-- get the defaults, which is what fold version 2 gives a producer without such facts;
-- a schema that folded a revocation or rotation with fold version 1 skipped it, so the
-- projector refuses the old stamp until `tradetape rebuild accounts`. The lines above
-- '-- @body' name the live schema; `tradetape rebuild` runs the body alone in a fresh
-- schema.
SET LOCAL search_path TO proj_accounts, public;
-- @body
ALTER TABLE producers
    ADD COLUMN status        text NOT NULL DEFAULT 'ACTIVE',
    ADD COLUMN key_rotations integer NOT NULL DEFAULT 0,
    ADD COLUMN previous_key  text,
    ADD COLUMN rotated_at    timestamptz,
    ADD COLUMN revoked_at    timestamptz,
    ADD COLUMN revoked_by    text,
    ADD COLUMN revoke_reason text;
