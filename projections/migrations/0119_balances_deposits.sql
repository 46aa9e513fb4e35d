-- Projection balances: every credited deposit, by account and deposit id (fold version
-- 4). A second DepositReceived of an account's deposit id is quarantined instead of
-- credited again, as the engine's fold counts it once; until session 20 two engine
-- workers could each accept a deposit command of one id (one sent off its account's
-- partition). The table is empty in a schema folded before: the balances projector
-- refuses it until `tradetape rebuild balances` (docs/projections.md, Fold versions).
-- The lines above '-- @body' name the live schema; `tradetape rebuild` runs the body
-- alone in a fresh schema.
SET LOCAL search_path TO proj_balances, public;
-- @body
CREATE TABLE deposits (
    account     text NOT NULL,
    deposit_id  text NOT NULL,
    asset       text NOT NULL,
    amount      numeric NOT NULL,
    event_id    uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (account, deposit_id)
);
