-- customer_features: per customer and look-back window (1, 7, 14, 30 days; one row each),
-- what the purchase-intent model knows about the customer's past: visits (sessions), product
-- views, cart adds, purchases, the device used to browse (views) versus to buy (purchases),
-- and the time of the last cart add and of the last purchase. RisingWave allows NOW() only in
-- temporal filters, so "time since" is read as NOW() minus last_cart_at / last_purchase_at
-- by the reader (recommender/intent/features.py). The windows are four temporal filters in
-- one UNION ALL, so old events retract from each window as NOW() advances.
CREATE MATERIALIZED VIEW IF NOT EXISTS customer_features AS
WITH windowed AS (
    SELECT user_id, session_id, action, device, ts, 1 AS window_days
    FROM clickstream WHERE ts > NOW() - INTERVAL '1 DAY'
    UNION ALL
    SELECT user_id, session_id, action, device, ts, 7 AS window_days
    FROM clickstream WHERE ts > NOW() - INTERVAL '7 DAYS'
    UNION ALL
    SELECT user_id, session_id, action, device, ts, 14 AS window_days
    FROM clickstream WHERE ts > NOW() - INTERVAL '14 DAYS'
    UNION ALL
    SELECT user_id, session_id, action, device, ts, 30 AS window_days
    FROM clickstream WHERE ts > NOW() - INTERVAL '30 DAYS'
)
SELECT
    user_id,
    window_days,
    COUNT(DISTINCT session_id) AS sessions,
    COUNT(*) FILTER (WHERE action = 'view') AS product_views,
    COUNT(*) FILTER (WHERE action = 'add_to_cart') AS cart_adds,
    COUNT(*) FILTER (WHERE action = 'purchase') AS purchases,
    COUNT(*) FILTER (WHERE action = 'view' AND device = 'mobile') AS views_mobile,
    COUNT(*) FILTER (WHERE action = 'view' AND device = 'desktop') AS views_desktop,
    COUNT(*) FILTER (WHERE action = 'purchase' AND device = 'mobile') AS purchases_mobile,
    COUNT(*) FILTER (WHERE action = 'purchase' AND device = 'desktop') AS purchases_desktop,
    MAX(ts) FILTER (WHERE action = 'add_to_cart') AS last_cart_at,
    MAX(ts) FILTER (WHERE action = 'purchase') AS last_purchase_at,
    MAX(ts) AS last_seen_at
FROM windowed
GROUP BY user_id, window_days;
