-- The VMIS-kNN history: per human session of the last 7 days, its distinct viewed products
-- in the order first viewed (ties by product_id), and the time of its last event. The
-- recommender builds its index from this view and follows its changes (subscription).
CREATE MATERIALIZED VIEW IF NOT EXISTS vmis_history AS
WITH first_views AS (
    SELECT session_id, product_id, MIN(ts) AS first_ts
    FROM clickstream
    WHERE action = 'view' AND ts > NOW() - INTERVAL '7 DAYS'
    GROUP BY session_id, product_id
)
SELECT
    v.session_id,
    ARRAY_AGG(v.product_id ORDER BY v.first_ts, v.product_id) AS items,
    MAX(f.last_event_at) AS last_ts
FROM first_views AS v
JOIN session_features AS f ON f.session_id = v.session_id
WHERE f.is_bot = FALSE
GROUP BY v.session_id;
