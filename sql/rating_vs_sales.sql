-- Average rating against units sold and revenue, per product sold or reviewed, over every loaded day.
WITH rated AS (
    SELECT product_id, COUNT(*) AS reviews, AVG(CAST(rating AS DOUBLE)) AS average_rating
    FROM product_reviews
    GROUP BY product_id
), sold AS (
    SELECT product_id, SUM(quantity) AS units, SUM(line_total) AS revenue
    FROM order_lines
    GROUP BY product_id
)
SELECT COALESCE(r.product_id, s.product_id) AS product_id,
       COALESCE(r.reviews, 0) AS reviews,
       ROUND(r.average_rating, 2) AS average_rating,
       COALESCE(s.units, 0) AS units,
       COALESCE(s.revenue, 0) AS revenue
FROM rated r
FULL OUTER JOIN sold s ON r.product_id = s.product_id
ORDER BY revenue DESC, product_id;
