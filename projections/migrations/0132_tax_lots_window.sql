-- Projection tax_lots, fold version 4 (session 27): a books row keeps only its first open
-- lots (`open_lots`: those acquired before the end of the journal chunk after the first
-- open lot's), and `rest_from`, the journal position from which every acquisition is an
-- open lot, whole, not in `open_lots` (the entry count when `open_lots` holds them all).
-- A batch read and wrote every open lot of each book it touched: hundreds for a wallet
-- that buys often and sells seldom (docs/projections.md, "tax_lots"). A live schema
-- folded by version 3 is refused until rebuilt (`tradetape rebuild tax_lots`); the
-- default below only lets the column be added to its rows. The lines above '-- @body'
-- name the live schema; `tradetape rebuild` runs the body alone in a fresh schema.
SET LOCAL search_path TO proj_tax_lots, public;
-- @body
ALTER TABLE books ADD COLUMN rest_from bigint NOT NULL DEFAULT 0;
