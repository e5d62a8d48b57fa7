-- One row per session seen in the last 7 days: who, when, what it did, and whether it looks
-- like a bot. Gaps are seconds between consecutive events of the session (ordered by ts,
-- then event_id). mean_gap_s = (last - first) / (events - 1), the mean of those gaps.
-- Bot rule: at least 5 events and a mean gap under 1 second (no human clicks that fast for
-- that long). device and user_id are the greatest value seen (a session has one of each).
CREATE MATERIALIZED VIEW IF NOT EXISTS session_features AS
WITH recent AS (
    SELECT
        session_id, user_id, product_id, category, action, device, ts,
        LAG(ts) OVER (PARTITION BY session_id ORDER BY ts, event_id) AS prev_ts
    FROM clickstream
    WHERE ts > NOW() - INTERVAL '7 DAYS'
),
per_session AS (
    SELECT
        session_id,
        MAX(user_id) AS user_id,
        MIN(ts) AS session_start,
        MAX(ts) AS last_event_at,
        COUNT(*) AS event_count,
        SUM(CASE WHEN action = 'view' THEN 1 ELSE 0 END) AS view_count,
        SUM(CASE WHEN action = 'add_to_cart' THEN 1 ELSE 0 END) AS cart_add_count,
        SUM(CASE WHEN action = 'purchase' THEN 1 ELSE 0 END) AS purchase_count,
        COUNT(DISTINCT product_id) AS distinct_products,
        COUNT(DISTINCT category) AS distinct_categories,
        MAX(device) AS device,
        MIN(CAST(EXTRACT(EPOCH FROM ts - prev_ts) AS DOUBLE PRECISION)) AS min_gap_s
    FROM recent
    GROUP BY session_id
)
SELECT
    session_id, user_id, session_start, last_event_at, event_count,
    view_count, cart_add_count, purchase_count, distinct_products, distinct_categories, device,
    CASE WHEN event_count > 1
        THEN CAST(EXTRACT(EPOCH FROM last_event_at - session_start) AS DOUBLE PRECISION)
            / (event_count - 1)
    END AS mean_gap_s,
    min_gap_s,
    event_count >= 5
        AND CAST(EXTRACT(EPOCH FROM last_event_at - session_start) AS DOUBLE PRECISION)
            < 1.0 * (event_count - 1) AS is_bot
FROM per_session;
