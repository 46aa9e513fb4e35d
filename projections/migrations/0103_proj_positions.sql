-- Projection positions: see docs/projections.md. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_positions;
SET LOCAL search_path TO proj_positions, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE positions (
    account       text NOT NULL,
    instrument    text NOT NULL,
    quantity      numeric NOT NULL,
    avg_cost      numeric NOT NULL,
    realized_pnl  numeric NOT NULL,
    fees_quote    numeric NOT NULL,
    fill_count    integer NOT NULL,
    last_event_id uuid NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (account, instrument)
);

CREATE TABLE marks (
    instrument  text PRIMARY KEY,
    price       numeric NOT NULL,
    source      text NOT NULL,
    venue       text NOT NULL,
    exchange_ts timestamptz NOT NULL,
    event_id    uuid NOT NULL
);

-- Unrealized PnL is computed at read time against the last mark, so the stored rows
-- never depend on how market data and fills interleave across topics.
CREATE VIEW pnl AS
SELECT p.account,
       p.instrument,
       p.quantity,
       p.avg_cost,
       m.price AS mark_price,
       m.exchange_ts AS mark_ts,
       p.realized_pnl,
       p.fees_quote,
       p.realized_pnl - p.fees_quote AS realized_pnl_net,
       CASE WHEN m.price IS NULL THEN NULL ELSE p.quantity * (m.price - p.avg_cost) END
           AS unrealized_pnl,
       p.realized_pnl - p.fees_quote
           + COALESCE(p.quantity * (m.price - p.avg_cost), 0) AS total_pnl
FROM positions p
LEFT JOIN marks m ON m.instrument = p.instrument;
