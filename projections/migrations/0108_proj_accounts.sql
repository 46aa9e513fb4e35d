-- Projection accounts: see docs/projections.md. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
CREATE SCHEMA IF NOT EXISTS proj_accounts;
SET LOCAL search_path TO proj_accounts, public;
-- @body
CREATE TABLE _seen (event_id uuid PRIMARY KEY);

CREATE TABLE accounts (
    account         text PRIMARY KEY,
    status          text NOT NULL,
    owner_id        text NOT NULL,
    owner_kind      text NOT NULL,
    owner_name      text NOT NULL,
    owner_country   text NOT NULL,
    owner_lei       text,
    base_currency   text NOT NULL,
    jurisdiction    text NOT NULL,
    wallet_id       text NOT NULL,
    kyc_level       text,
    kyc_verified_by text,
    kyc_reference   text,
    kyc_verified_at timestamptz,
    open_aml_flags  integer NOT NULL,
    opened_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    event_count     integer NOT NULL,
    last_event_id   uuid NOT NULL
);
CREATE INDEX accounts_owner ON accounts (owner_id);

CREATE TABLE aml_flags (
    account       text NOT NULL,
    flag_id       text NOT NULL,
    open          boolean NOT NULL,
    reason        text NOT NULL,
    raised_by     text NOT NULL,
    raised_at     timestamptz NOT NULL,
    cleared_by    text,
    note          text,
    cleared_at    timestamptz,
    last_event_id uuid NOT NULL,
    PRIMARY KEY (account, flag_id)
);

CREATE TABLE producers (
    producer_id   text PRIMARY KEY,
    public_key    text NOT NULL,
    accounts      jsonb NOT NULL,
    registered_by text NOT NULL,
    registered_at timestamptz NOT NULL,
    event_id      uuid NOT NULL
);

CREATE TABLE account_events (
    event_id    uuid PRIMARY KEY,
    account     text,
    event_type  text NOT NULL,
    occurred_at timestamptz NOT NULL,
    detail      jsonb NOT NULL
);
CREATE INDEX account_events_account ON account_events (account, occurred_at);
