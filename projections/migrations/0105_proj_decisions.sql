-- Projection decisions: see docs/projections.md. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_decisions;
SET LOCAL search_path TO proj_decisions, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE decisions (
    event_id            uuid PRIMARY KEY,
    event_type          text NOT NULL,
    account             text NOT NULL,
    producer_id         text,
    strategy_id         text,
    client_order_id     text,
    intent_event_id     uuid,
    intent_kind         text,
    outcome             text NOT NULL,
    reason_codes        jsonb NOT NULL,
    risk_config_version integer,
    order_id            text,
    detail              text NOT NULL,
    occurred_at         timestamptz NOT NULL
);
CREATE INDEX decisions_account ON decisions (account, occurred_at);

CREATE TABLE rule_results (
    event_id     uuid NOT NULL,
    ordinal      integer NOT NULL,
    rule_id      text NOT NULL,
    rule_version integer NOT NULL,
    passed       boolean NOT NULL,
    reason_code  text,
    detail       text NOT NULL,
    PRIMARY KEY (event_id, ordinal)
);
