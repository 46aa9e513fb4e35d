-- Projection positions: fees paid in an asset that is neither the instrument's base nor
-- its quote (e.g. BNB) were dropped; fees_other keeps them per asset (jsonb: asset ->
-- exact decimal text), and the pnl view shows them beside the PnL they are not part of
-- (no price for them is assumed). A base-asset fee is folded into quantity and
-- fees_quote (docs/projections.md). The lines above '-- @body' name the live schema;
-- `tradetape rebuild` runs the body alone in a fresh schema.
SET LOCAL search_path TO proj_positions, public;
-- @body
ALTER TABLE positions ADD COLUMN fees_other jsonb NOT NULL DEFAULT '{}';

CREATE OR REPLACE VIEW pnl AS
SELECT p.account,
       p.instrument,
       p.quantity,
       p.avg_cost,
       m.price AS mark_price,
       m.exchange_ts AS mark_ts,
       p.realized_pnl,
       p.fees_quote,
       p.realized_pnl - p.fees_quote AS realized_pnl_net,
       CASE WHEN m.price IS NULL THEN NULL ELSE p.quantity * (m.price - p.avg_cost) END
           AS unrealized_pnl,
       p.realized_pnl - p.fees_quote
           + CASE WHEN p.quantity = 0 THEN 0 ELSE p.quantity * (m.price - p.avg_cost) END
           AS total_pnl,
       p.fees_other
FROM positions p
LEFT JOIN marks m ON m.instrument = p.instrument;
