-- Projection deadletters: see docs/projections.md. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_deadletters;
SET LOCAL search_path TO proj_deadletters, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE deadletters (
    event_id           uuid PRIMARY KEY,
    source_topic       text NOT NULL,
    source_partition   integer,
    source_offset      bigint,
    error_type         text NOT NULL,
    error              text NOT NULL,
    stage              text NOT NULL,
    producer           text NOT NULL,
    original_key_b64   text,
    original_value_b64 text NOT NULL,
    occurred_at        timestamptz NOT NULL
);
CREATE INDEX deadletters_source ON deadletters (source_topic, occurred_at);
