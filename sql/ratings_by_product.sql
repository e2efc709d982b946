-- Reviews per rating (1 to 5) and the average rating per product, over every loaded day (a
-- DummyJSON lake repeats its reviews in every day's snapshot: add WHERE dt = DATE '2024-01-15').
SELECT product_id,
       MAX(category) AS category,
       COUNT(*) AS reviews,
       SUM(CASE WHEN rating = 1 THEN 1 ELSE 0 END) AS rating_1,
       SUM(CASE WHEN rating = 2 THEN 1 ELSE 0 END) AS rating_2,
       SUM(CASE WHEN rating = 3 THEN 1 ELSE 0 END) AS rating_3,
       SUM(CASE WHEN rating = 4 THEN 1 ELSE 0 END) AS rating_4,
       SUM(CASE WHEN rating = 5 THEN 1 ELSE 0 END) AS rating_5,
       ROUND(AVG(CAST(rating AS DOUBLE)), 2) AS average_rating
FROM product_reviews
GROUP BY product_id
ORDER BY reviews DESC, product_id;
