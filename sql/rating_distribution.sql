-- Reviews per rating (1 to 5) and the average rating, per category (level 'category') and per
-- product (level 'product'), over every loaded day. A DummyJSON lake holds the same reviews in
-- every day's snapshot: add WHERE dt = DATE '2024-01-15' to count each once.
SELECT CASE WHEN GROUPING(product_id) = 1 THEN 'category' ELSE 'product' END AS level,
       category,
       product_id,
       COUNT(*) AS reviews,
       SUM(CASE WHEN rating = 1 THEN 1 ELSE 0 END) AS rating_1,
       SUM(CASE WHEN rating = 2 THEN 1 ELSE 0 END) AS rating_2,
       SUM(CASE WHEN rating = 3 THEN 1 ELSE 0 END) AS rating_3,
       SUM(CASE WHEN rating = 4 THEN 1 ELSE 0 END) AS rating_4,
       SUM(CASE WHEN rating = 5 THEN 1 ELSE 0 END) AS rating_5,
       ROUND(AVG(CAST(rating AS DOUBLE)), 2) AS average_rating
FROM product_reviews
GROUP BY GROUPING SETS ((category), (category, product_id))
ORDER BY level, reviews DESC, category, product_id;
