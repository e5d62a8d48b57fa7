-- "Trending now": per category and 5-minute tumbling window starting in the last hour, the
-- 10 products with the highest engagement (views + 3 x add_to_cart + 5 x purchase). Bot
-- sessions (session_features.is_bot) are left out. Ties rank by product_id.
CREATE MATERIALIZED VIEW IF NOT EXISTS trending_by_category AS
WITH recent AS (
    SELECT session_id, product_id, product_name, category, action, window_start
    FROM TUMBLE(clickstream, ts, INTERVAL '5 MINUTES')
    WHERE window_start > NOW() - INTERVAL '1 HOUR'
),
human AS (
    SELECT r.*
    FROM recent AS r
    LEFT JOIN session_features AS f ON f.session_id = r.session_id
    WHERE COALESCE(f.is_bot, FALSE) = FALSE
),
scored AS (
    SELECT
        category,
        product_id,
        MAX(product_name) AS product_name,
        window_start,
        SUM(CASE WHEN action = 'view' THEN 1 ELSE 0 END) AS view_count,
        SUM(CASE WHEN action = 'add_to_cart' THEN 1 ELSE 0 END) AS cart_adds,
        SUM(CASE WHEN action = 'view' THEN 1 WHEN action = 'add_to_cart' THEN 3
                 WHEN action = 'purchase' THEN 5 ELSE 0 END) AS engagement_score
    FROM human
    GROUP BY category, product_id, window_start
),
ranked AS (
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY category, window_start ORDER BY engagement_score DESC, product_id
        ) AS rank
    FROM scored
)
SELECT category, rank, product_id, product_name, engagement_score, view_count, cart_adds,
    window_start
FROM ranked
WHERE rank <= 10;
