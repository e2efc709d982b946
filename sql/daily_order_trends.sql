-- Orders, revenue and average order value per day. Partition pruning: add e.g.
-- WHERE dt BETWEEN DATE '2024-01-01' AND DATE '2024-01-31'.
SELECT dt,
       COUNT(*) AS orders,
       SUM(units) AS units,
       SUM(items_total) AS revenue,
       CAST(SUM(items_total) / COUNT(*) AS DECIMAL(18,2)) AS average_order_value,
       SUM(CASE WHEN reconciles THEN 0 ELSE 1 END) AS orders_not_reconciling
FROM orders
GROUP BY dt
ORDER BY dt;
