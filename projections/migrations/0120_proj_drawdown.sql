-- Projection drawdown: each account's drawdown state as the engine's brake measures it
-- (DRAWDOWN_BRAKE v6: units, NAV per unit, peak, drawdown), folded from UnitsChanged,
-- PeakEquityRaised and the valued RiskDecisions on risk.decisions; see
-- docs/projections.md. The lines above '-- @body' name the live schema; `tradetape
-- rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_drawdown;
SET LOCAL search_path TO proj_drawdown, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE drawdowns (
    account          text PRIMARY KEY,
    units            numeric NOT NULL,
    unit_nav         numeric,
    equity           numeric,
    nav              numeric,
    peak_nav         numeric,
    peak_equity      numeric,
    drawdown         numeric,
    valued_at        timestamptz NOT NULL,
    valued_event_id  uuid NOT NULL,
    valued_by        text NOT NULL,
    units_changed_at timestamptz,
    units_event_id   uuid,
    peak_changed_at  timestamptz,
    peak_event_id    uuid,
    event_count      integer NOT NULL,
    last_event_id    uuid NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE drawdown_events (
    event_id    uuid PRIMARY KEY,
    account     text NOT NULL,
    event_type  text NOT NULL,
    change      text NOT NULL,
    flows       jsonb,
    units       numeric NOT NULL,
    unit_nav    numeric,
    equity      numeric,
    nav         numeric,
    peak_before numeric,
    peak_nav    numeric,
    peak_equity numeric,
    drawdown    numeric,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX drawdown_events_account ON drawdown_events (account, occurred_at);
