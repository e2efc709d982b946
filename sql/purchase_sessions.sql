-- Purchase log: sessions, purchases and purchases per session per day, with revenue and margin.
-- (A session that spans midnight UTC counts on each of its days.)
SELECT dt,
       COUNT(*) AS purchases,
       COUNT(DISTINCT session_id) AS sessions,
       CAST(COUNT(*) AS DOUBLE) / COUNT(DISTINCT session_id) AS purchases_per_session,
       COUNT(DISTINCT user_id) AS users,
       SUM(revenue) AS revenue,
       SUM(margin) AS margin
FROM purchase_events
GROUP BY dt
ORDER BY dt;
