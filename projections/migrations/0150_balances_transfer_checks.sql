-- Projection balances: the newest travel-rule check read of each withdrawal (fold version
-- 7). Since session 27 the checks are on transfers.checks, which only the travel rule's
-- principal may write (on transfers.events the transfer service's principal could write
-- one claiming the travel rule), and a reader meets the two topics in no fixed order: a
-- check read before its request waits in this table and the request folds it. Version 6
-- folded checks from transfers.events only, so a schema it folded is refused until
-- `tradetape rebuild balances` (docs/projections.md, Fold versions).
-- The lines above '-- @body' name the live schema; `tradetape rebuild` runs the body
-- alone in a fresh schema.
SET LOCAL search_path TO proj_balances, public;
-- @body
CREATE TABLE transfer_checks (
    account     text NOT NULL,
    transfer_id text NOT NULL,
    outcome     text NOT NULL,
    event_id    uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (account, transfer_id)
);
