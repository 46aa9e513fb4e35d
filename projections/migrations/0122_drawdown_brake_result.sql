-- Projection drawdown, fold version 4: the DRAWDOWN_BRAKE rule's result at the account's
-- last decision that ran it (PASSED, DRAWDOWN_BRAKE or NO_MARK), its detail and that
-- decision's id: what the engine itself said it measured, including what this
-- projection cannot see (flows not yet turned into units); see docs/projections.md.
-- The lines above '-- @body' name the live schema.
SET LOCAL search_path TO proj_drawdown, public;
-- @body
ALTER TABLE drawdowns
    ADD COLUMN brake_result   text,
    ADD COLUMN brake_detail   text,
    ADD COLUMN brake_event_id uuid;
