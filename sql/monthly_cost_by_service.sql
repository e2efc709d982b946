-- The month's AWS bill by service, from the newest estimate of the usage asset.
SELECT service,
       ROUND(SUM(monthly_usd), 4) AS monthly_usd
FROM usage_estimate
WHERE dt = (SELECT MAX(dt) FROM usage_estimate)
GROUP BY service
ORDER BY monthly_usd DESC, service;
