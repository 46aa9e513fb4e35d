-- Projection risk_config: see docs/projections.md. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_risk_config;
SET LOCAL search_path TO proj_risk_config, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE config_events (
    event_id       uuid PRIMARY KEY,
    event_type     text NOT NULL,
    scope          text NOT NULL,
    config_version integer,
    limits         jsonb,
    actor          text NOT NULL,
    reason         text NOT NULL,
    detail         jsonb,
    occurred_at    timestamptz NOT NULL
);
CREATE INDEX config_events_scope ON config_events (scope, occurred_at);

CREATE TABLE kill_switches (
    scope      text PRIMARY KEY,
    engaged    boolean NOT NULL,
    actor      text NOT NULL,
    reason     text NOT NULL,
    event_id   uuid NOT NULL,
    changed_at timestamptz NOT NULL
);

CREATE VIEW current_limits AS
SELECT DISTINCT ON (scope) scope, config_version, limits, actor, reason, occurred_at
FROM config_events
WHERE event_type = 'RiskLimitsChanged'
ORDER BY scope, config_version DESC, event_id DESC;
