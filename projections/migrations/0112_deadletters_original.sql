-- Projection deadletters: the original value's full length in bytes, its SHA-256 (hex)
-- and whether the dead letter kept only a prefix of the key or value (DeadLetter v1's
-- optional `original_value_bytes`, `original_value_sha256`, `original_truncated`, since
-- deploy/deadletter.py keeps at most 128 KiB of a value). A dead letter written before
-- those fields existed projects NULL length and digest and `original_truncated` false
-- (the event's own default). Rows projected before this migration have NULL in all three
-- until `tradetape rebuild deadletters` (docs/projections.md). The lines above '-- @body'
-- name the live schema; `tradetape rebuild` runs the body alone in a fresh schema.
SET LOCAL search_path TO proj_deadletters, public;
-- @body
ALTER TABLE deadletters
    ADD COLUMN original_value_bytes  bigint,
    ADD COLUMN original_value_sha256 text,
    ADD COLUMN original_truncated    boolean;
