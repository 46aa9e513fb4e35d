-- Projection alerts (market-abuse surveillance): see docs/surveillance.md. The lines above
-- '-- @body' name the live schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_alerts;
SET LOCAL search_path TO proj_alerts, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE alerts (
    alert_id             uuid PRIMARY KEY,
    event_id             uuid NOT NULL,
    detector             text NOT NULL,
    detector_version     integer NOT NULL,
    pattern              text NOT NULL,
    account              text NOT NULL,
    related_accounts     jsonb NOT NULL,
    beneficial_owner     text,
    instrument           text NOT NULL,
    score                numeric NOT NULL,
    window_start         timestamptz NOT NULL,
    window_end           timestamptz NOT NULL,
    triggering_event_ids jsonb NOT NULL,
    evidence             jsonb NOT NULL,
    summary              text NOT NULL,
    occurred_at          timestamptz NOT NULL
);
CREATE INDEX alerts_pattern ON alerts (pattern, window_end);
CREATE INDEX alerts_owner ON alerts (beneficial_owner, window_end);
