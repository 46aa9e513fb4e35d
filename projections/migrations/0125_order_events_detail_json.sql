-- Projection orders: `order_events.detail` is json, not jsonb (session 25). The column
-- holds the event's payload as the fold wrote it (compact JSON text) and is only ever
-- read whole (`query order_history`, the checksum, which renders it as the jsonb value it
-- always rendered); no query indexes or compares it. jsonb's input parsed and re-encoded
-- every payload on a rebuild's COPY (~0.45 s of PostgreSQL's CPU for a 1M-event log's
-- 524,689 rows, docs/benchmarks.md, session 25); json's only checks it. Rows folded before
-- this migration keep their values (jsonb's text, keys in jsonb's order); new rows and a
-- rebuild's hold the payload's own text. The lines above '-- @body' name the live schema;
-- `tradetape rebuild` runs the body alone in a fresh schema.
SET LOCAL search_path TO proj_orders, public;
-- @body
ALTER TABLE order_events ALTER COLUMN detail TYPE json USING detail::json;
