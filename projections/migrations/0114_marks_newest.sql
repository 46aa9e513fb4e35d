-- Projection positions: the mark is the engine's reference price (fold version 3): the
-- newer by event time of the last MarketTrade and the last QuoteUpdated mid, the trade on
-- a tie; a print stamped before the mark it follows in the log (a second venue's feed, a
-- late or replayed capture) no longer replaces it. occurred_at is the mark's event time,
-- which the fold compares. Rows folded before this migration have it NULL: the positions
-- projector refuses them until `tradetape rebuild positions` (docs/projections.md, Fold
-- versions). The lines above '-- @body' name the live schema; `tradetape rebuild` runs
-- the body alone in a fresh schema.
SET LOCAL search_path TO proj_positions, public;
-- @body
ALTER TABLE marks ADD COLUMN occurred_at timestamptz;
