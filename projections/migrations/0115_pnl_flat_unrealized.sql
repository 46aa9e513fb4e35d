-- Projection positions: a flat position's unrealized PnL is 0, mark or not (nothing is
-- open to value); it showed NULL without a mark beside a total_pnl that counted it as 0.
-- An open position without a mark keeps NULL in both (0110). The lines above '-- @body'
-- name the live schema; `tradetape rebuild` runs the body alone in a fresh schema.
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
       CASE WHEN p.quantity = 0 THEN 0 ELSE p.quantity * m.price - p.cost_basis END
           AS unrealized_pnl,
       p.realized_pnl - p.fees_quote
           + CASE WHEN p.quantity = 0 THEN 0 ELSE p.quantity * m.price - p.cost_basis END
           AS total_pnl,
       p.fees_other
FROM positions p
LEFT JOIN marks m ON m.instrument = p.instrument;
