-- Purchase log: revenue and margin by user segment (age band, occupation, city), joining every
-- day's purchases to each user's current profile (dim_user_profiles, not partitioned: a profile
-- file landed today segments old purchases too). A purchase by a user without a profile counts
-- under a null value.
SELECT 'age_band' AS segment, p.age_band AS value, COUNT(*) AS purchases, COUNT(DISTINCT e.user_id) AS users,
       SUM(e.revenue) AS revenue, SUM(e.margin) AS margin
FROM purchase_events e LEFT JOIN dim_user_profiles p ON p.user_id = e.user_id
GROUP BY p.age_band
UNION ALL
SELECT 'occupation', p.occupation, COUNT(*), COUNT(DISTINCT e.user_id), SUM(e.revenue), SUM(e.margin)
FROM purchase_events e LEFT JOIN dim_user_profiles p ON p.user_id = e.user_id
GROUP BY p.occupation
UNION ALL
SELECT 'city', p.city, COUNT(*), COUNT(DISTINCT e.user_id), SUM(e.revenue), SUM(e.margin)
FROM purchase_events e LEFT JOIN dim_user_profiles p ON p.user_id = e.user_id
GROUP BY p.city
ORDER BY segment, revenue DESC, value;
