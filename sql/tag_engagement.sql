-- Posts, views, likes and dislikes per tag, over every loaded day (tags is array<string>).
SELECT tag,
       COUNT(*) AS posts,
       SUM(views) AS views,
       SUM(likes) AS likes,
       SUM(dislikes) AS dislikes
FROM posts
CROSS JOIN UNNEST(tags) AS t (tag)
GROUP BY tag
ORDER BY views DESC, tag;
