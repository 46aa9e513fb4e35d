-- Projection tax_lots, fold version 3 (session 26): each journal chunk keeps the book's
-- open lots at its start (`opening`: the first open lot's journal position and that lot
-- as it then stood, or [] when none is open; the other open lots are the acquisitions
-- after it, whole, lots being drawn first in, first out), and the books row the same
-- for its tail (`tail_opening`, [] when the tail is empty). An entry older than its
-- book's last is folded again from its chunk's opening, not from the journal's start
-- (docs/projections.md, "tax_lots"). Each element of `open_lots` gains the journal
-- position of the entry that acquired it. A live schema folded by version 2 is refused
-- until rebuilt (`tradetape rebuild tax_lots`); the defaults below only let the columns
-- be added to its rows. Journal chunks hold 32 entries since fold version 2 (the 256 in
-- migration 0130's comment was version 1's). The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
SET LOCAL search_path TO proj_tax_lots, public;
-- @body
ALTER TABLE journal ADD COLUMN opening json NOT NULL DEFAULT '[]';
ALTER TABLE books ADD COLUMN tail_opening json NOT NULL DEFAULT '[]';
-- The fold's state is json, not jsonb: only the fold reads it, whole, and a live batch
-- writes every book it touches (its open lots: hundreds of lots for an active wallet);
-- jsonb parsed and rebuilt each value on the way in, json only checks it (as
-- `orders.order_events.detail`, 0125). The checksum renders json as its jsonb value.
ALTER TABLE journal ALTER COLUMN entries TYPE json USING entries::json;
ALTER TABLE books ALTER COLUMN open_lots TYPE json USING open_lots::json,
    ALTER COLUMN last_key TYPE json USING last_key::json,
    ALTER COLUMN tail TYPE json USING tail::json;
