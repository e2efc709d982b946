-- The bytes each asset writes to the lake a day, from the newest usage measurement.
SELECT asset,
       SUM(per_day) AS bytes_written_a_day
FROM usage_by_asset
WHERE dt = (SELECT MAX(dt) FROM usage_by_asset)
  AND figure LIKE '%/bytes_written'
GROUP BY asset
ORDER BY bytes_written_a_day DESC, asset;
