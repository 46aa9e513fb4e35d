-- Projection positions: the pnl view's total_pnl is NULL, not realized only, for an open
-- position without a mark (0103 counted the missing unrealized PnL as zero). A flat
-- position has no unrealized PnL, mark or not. The lines above '-- @body' name the live
-- schema; `tradetape rebuild` runs the body alone in a fresh schema.
SET LOCAL search_path TO proj_positions, public;
-- @body
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
           AS total_pnl
FROM positions p
LEFT JOIN marks m ON m.instrument = p.instrument;
