-- Projection orders: see docs/projections.md. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_orders;
SET LOCAL search_path TO proj_orders, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE orders (
    order_id          text PRIMARY KEY,
    account           text NOT NULL,
    producer_id       text NOT NULL,
    strategy_id       text NOT NULL,
    client_order_id   text NOT NULL,
    instrument        text NOT NULL,
    side              text NOT NULL,
    order_type        text NOT NULL,
    quantity          numeric NOT NULL,
    limit_price       numeric,
    trigger_price     numeric,
    time_in_force     text NOT NULL,
    venue             text NOT NULL,
    parent_order_id   text,
    decision_event_id uuid,
    status            text NOT NULL,
    filled_quantity   numeric NOT NULL,
    filled_notional   numeric NOT NULL,
    leaves_quantity   numeric NOT NULL,
    venue_order_id    text,
    reason            text,
    event_count       integer NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    last_event_id     uuid NOT NULL
);
CREATE INDEX orders_account ON orders (account, created_at);

CREATE TABLE order_events (
    event_id    uuid PRIMARY KEY,
    order_id    text NOT NULL,
    account     text NOT NULL,
    event_type  text NOT NULL,
    status      text NOT NULL,
    occurred_at timestamptz NOT NULL,
    detail      jsonb NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, occurred_at);
