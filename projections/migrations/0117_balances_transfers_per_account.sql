-- Projection balances: a transfer is keyed by its account and id (fold version 3), as the
-- engine keeps withdrawals (per account, `EngineState._apply_transfer`). Keyed by id
-- alone, an id two accounts requested was the first request's in whichever order a
-- reader met the two accounts' partitions: the other account's request and settlement
-- were quarantined, so its withdrawal was never debited here (the engine debits it), and
-- a rebuild could keep the other account's. The projector refuses a schema folded by
-- version 2 until `tradetape rebuild balances`. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
SET LOCAL search_path TO proj_balances, public;
-- @body
ALTER TABLE transfers DROP CONSTRAINT transfers_pkey;
ALTER TABLE transfers ADD PRIMARY KEY (account, transfer_id);
