-- Purchase log: purchases, revenue (selling price - discount) and margin (selling - cost - discount)
-- by each of category, brand, device_type, os, browser, referrer and payment_method (and the
-- buyers' age_band, occupation, city as profiled when each day was computed), over all days.
-- Partition pruning: add e.g. WHERE dt BETWEEN DATE '2024-01-01' AND DATE '2024-01-31'.
SELECT dimension,
       value,
       SUM(purchases) AS purchases,
       SUM(revenue) AS revenue,
       SUM(margin) AS margin,
       CAST(SUM(margin) / NULLIF(SUM(revenue), 0) AS DOUBLE) AS margin_rate
FROM purchase_breakdown
GROUP BY dimension, value
ORDER BY dimension, revenue DESC, value;
