-- Projection fills: see docs/projections.md. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_fills;
SET LOCAL search_path TO proj_fills, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE fills (
    event_id        uuid PRIMARY KEY,
    fill_id         text NOT NULL,
    order_id        text NOT NULL,
    account         text NOT NULL,
    instrument      text NOT NULL,
    side            text NOT NULL,
    quantity        numeric NOT NULL,
    price           numeric NOT NULL,
    notional        numeric NOT NULL,
    fee             numeric NOT NULL,
    fee_asset       text NOT NULL,
    liquidity       text NOT NULL,
    venue           text NOT NULL,
    venue_trade_id  text NOT NULL,
    uti             text NOT NULL,
    traded_at       timestamptz NOT NULL,
    leaves_quantity numeric NOT NULL,
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX fills_account ON fills (account, traded_at);
CREATE INDEX fills_order ON fills (order_id);
