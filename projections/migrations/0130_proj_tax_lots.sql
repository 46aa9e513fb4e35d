-- Projection tax_lots (US tax lots per wallet, Form 8949 and 1099-DA): see
-- docs/projections.md ("tax_lots") and projections/tax/. The lines above '-- @body' name
-- the live schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_tax_lots;
SET LOCAL search_path TO proj_tax_lots, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

-- The fold's state per wallet and asset: its open lots, how many entries it folded, the
-- last entry's key (time, event id, leg) and the journal's last, incomplete chunk.
CREATE TABLE books (
    account     text NOT NULL,
    asset       text NOT NULL,
    open_lots   jsonb NOT NULL,
    entry_count integer NOT NULL,
    last_key    jsonb NOT NULL,
    tail        jsonb NOT NULL,
    PRIMARY KEY (account, asset)
);

-- Every entry of a book in fold order, in complete chunks of 256 (a refold reads them).
CREATE TABLE journal (
    account text NOT NULL,
    asset   text NOT NULL,
    chunk   text NOT NULL,
    entries jsonb NOT NULL,
    PRIMARY KEY (account, asset, chunk)
);

-- A deposit id is folded once per account, as the engine credits it.
CREATE TABLE deposit_ids (
    account    text NOT NULL,
    deposit_id text NOT NULL,
    event_id   uuid NOT NULL,
    PRIMARY KEY (account, deposit_id)
);

CREATE TABLE lots (
    lot_id              uuid PRIMARY KEY,
    account             text NOT NULL,
    asset               text NOT NULL,
    acquired_at         timestamptz NOT NULL,
    event_id            uuid NOT NULL,
    leg                 text NOT NULL,
    kind                text NOT NULL,
    ref                 text NOT NULL,
    quantity            numeric NOT NULL,
    basis_usd           numeric,
    basis_reason        text,
    covered             boolean NOT NULL,
    remaining_quantity  numeric NOT NULL,
    remaining_basis_usd numeric
);
CREATE INDEX lots_account ON lots (account, asset, acquired_at);

CREATE TABLE disposals (
    event_id           uuid NOT NULL,
    leg                text NOT NULL,
    account            text NOT NULL,
    asset              text NOT NULL,
    kind               text NOT NULL,
    disposed_at        timestamptz NOT NULL,
    ref                text NOT NULL,
    quantity           numeric NOT NULL,
    proceeds_usd       numeric,
    proceeds_reason    text,
    unmatched_quantity numeric NOT NULL,
    slices             jsonb NOT NULL,
    PRIMARY KEY (event_id, leg)
);
CREATE INDEX disposals_account ON disposals (account, disposed_at);

CREATE TABLE withdrawals (
    account            text NOT NULL,
    transfer_id        text NOT NULL,
    asset              text NOT NULL,
    quantity           numeric NOT NULL,
    withdrawn_at       timestamptz NOT NULL,
    event_id           uuid NOT NULL,
    unmatched_quantity numeric NOT NULL,
    slices             jsonb NOT NULL,
    PRIMARY KEY (account, transfer_id)
);

CREATE TABLE transfer_requests (
    account     text NOT NULL,
    transfer_id text NOT NULL,
    asset       text NOT NULL,
    amount      numeric NOT NULL,
    status      text NOT NULL,
    event_id    uuid NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (account, transfer_id)
);

-- One row per lot slice a disposal took, with Form 8949's columns (exact amounts; the
-- forms round to cents). `exception` set: on no form (unknown proceeds, no lot).
CREATE VIEW disposal_slices AS
SELECT d.account, d.asset, d.kind, d.event_id, d.leg, d.ref,
       (s->>'row_id')::uuid AS row_id,
       (s->>'lot_id')::uuid AS lot_id,
       (s->>'quantity')::numeric AS quantity,
       (s->>'acquired_at')::timestamptz AS date_acquired,
       d.disposed_at AS date_sold,
       (s->>'proceeds')::numeric AS proceeds_usd,
       (s->>'basis')::numeric AS basis_usd,
       (s->>'proceeds')::numeric - (s->>'basis')::numeric AS gain_usd,
       (s->>'covered')::boolean AS covered,
       s->>'term' AS term,
       s->>'box' AS box,
       s->>'exception' AS exception
FROM disposals d CROSS JOIN LATERAL jsonb_array_elements(d.slices) AS s;
