-- Projection positions: an exact cost basis (fold version 2). cost_basis is the signed
-- cost of the open position (quantity x average cost; negative for a short), moved
-- exactly to realized PnL as units close; avg_cost is shown (cost_basis / quantity to 28
-- significant digits) and no longer used. Before, the average cost was rounded to 18
-- decimal places and realized PnL computed from it (a flat round trip in PEPE/BTC at
-- 1.5E-18 realized -5E-10). The pnl view's unrealized PnL is quantity x mark -
-- cost_basis, so realized + unrealized is exactly the cash flow plus the position at
-- the mark. Rows folded before this migration have cost_basis 0: the positions
-- projector refuses them until `tradetape rebuild positions` (docs/projections.md, Fold
-- versions). The lines above '-- @body' name the live schema; `tradetape rebuild` runs
-- the body alone in a fresh schema.
SET LOCAL search_path TO proj_positions, public;
-- @body
ALTER TABLE positions ADD COLUMN cost_basis numeric NOT NULL DEFAULT 0;

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
       CASE WHEN m.price IS NULL THEN NULL ELSE p.quantity * m.price - p.cost_basis END
           AS unrealized_pnl,
       p.realized_pnl - p.fees_quote
           + CASE WHEN p.quantity = 0 THEN 0 ELSE p.quantity * m.price - p.cost_basis END
           AS total_pnl,
       p.fees_other
FROM positions p
LEFT JOIN marks m ON m.instrument = p.instrument;
