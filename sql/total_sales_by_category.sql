-- Total sales by category, over every loaded day (Athena or DuckDB: same SQL).
SELECT category,
       COUNT(DISTINCT order_id) AS orders,
       SUM(quantity) AS units,
       SUM(line_total) AS revenue
FROM order_lines
GROUP BY category
ORDER BY revenue DESC, category;
