-- Projection balances: see docs/projections.md. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_balances;
SET LOCAL search_path TO proj_balances, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

-- Only commutative columns: fills and transfers arrive on two topics, so "the last
-- event" of a balance would depend on how they interleave (see movements for history).
CREATE TABLE balances (
    account        text NOT NULL,
    asset          text NOT NULL,
    amount         numeric NOT NULL,
    movement_count integer NOT NULL,
    PRIMARY KEY (account, asset)
);

CREATE TABLE movements (
    event_id    uuid NOT NULL,
    leg         text NOT NULL,
    account     text NOT NULL,
    asset       text NOT NULL,
    amount      numeric NOT NULL,
    kind        text NOT NULL,
    reference   text NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (event_id, leg)
);
CREATE INDEX movements_account ON movements (account, asset, occurred_at);

CREATE TABLE transfers (
    transfer_id   text PRIMARY KEY,
    account       text NOT NULL,
    asset         text NOT NULL,
    amount        numeric NOT NULL,
    status        text NOT NULL,
    last_event_id uuid NOT NULL,
    updated_at    timestamptz NOT NULL
);
