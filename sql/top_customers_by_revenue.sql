-- The 10 customers who spent the most, with their order count.
SELECT customer_id,
       MAX(customer_name) AS customer_name,
       COUNT(DISTINCT order_id) AS orders,
       SUM(line_total) AS revenue
FROM order_lines
GROUP BY customer_id
ORDER BY revenue DESC, customer_id
LIMIT 10;
