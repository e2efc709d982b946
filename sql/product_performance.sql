-- Units, revenue and average selling price per product.
SELECT product_id,
       MAX(product_name) AS product_name,
       MAX(category) AS category,
       SUM(quantity) AS units,
       SUM(line_total) AS revenue,
       CAST(SUM(line_total) / SUM(quantity) AS DECIMAL(18,2)) AS average_unit_price
FROM order_lines
GROUP BY product_id
ORDER BY revenue DESC, product_id;
