-- Projection fills: the quote a fill took (fold version 2). `Fill.quote_id` is the event
-- id of the displayed quote whose quantity a taker fill on submission took (null for a
-- fill at a public print): best-execution review asks which quote an execution was
-- priced from. Rows folded before this migration have quote_id NULL, also for fills that
-- took a quote: the fills projector refuses such a schema until `tradetape rebuild
-- fills` (docs/projections.md, Fold versions). The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
SET LOCAL search_path TO proj_fills, public;
-- @body
ALTER TABLE fills ADD COLUMN quote_id text;
