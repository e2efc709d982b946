-- The 10 most engaged users: posts and comments written, likes, views and comments their posts
-- received (likes of their comments too), over every loaded day; ranked by posts + comments + likes.
WITH activity AS (
    SELECT user_id, 1 AS posts, 0 AS comments, COALESCE(likes, 0) AS likes_received,
           COALESCE(views, 0) AS views_received
    FROM posts
    UNION ALL
    SELECT user_id, 0, 1, COALESCE(likes, 0), 0
    FROM comments
)
SELECT user_id,
       SUM(posts) AS posts,
       SUM(comments) AS comments,
       SUM(likes_received) AS likes_received,
       SUM(views_received) AS views_received
FROM activity
GROUP BY user_id
ORDER BY SUM(posts) + SUM(comments) + SUM(likes_received) DESC, user_id
LIMIT 10;
