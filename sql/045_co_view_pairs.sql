-- "Customers also viewed": pairs of products viewed in the same session during the last
-- 30 minutes (product_a < product_b), with the number of distinct sessions that viewed both,
-- kept from 3 sessions up. Each (session, product) is deduplicated before the self-join.
-- Bot sessions (session_features.is_bot) are left out: a crawler viewing hundreds of random
-- products would otherwise fill the view with noise pairs. A product's name is the greatest
-- name among all its views in the window, bots included (names rarely change).
CREATE MATERIALIZED VIEW IF NOT EXISTS co_view_pairs AS
WITH recent_views AS (
    SELECT session_id, product_id, MAX(product_name) AS product_name
    FROM clickstream
    WHERE action = 'view' AND ts > NOW() - INTERVAL '30 MINUTES'
    GROUP BY session_id, product_id
),
product_names AS (
    SELECT product_id, MAX(product_name) AS product_name
    FROM recent_views
    GROUP BY product_id
),
human_views AS (
    SELECT v.session_id, v.product_id
    FROM recent_views AS v
    LEFT JOIN session_features AS f ON f.session_id = v.session_id
    WHERE COALESCE(f.is_bot, FALSE) = FALSE
),
pair_counts AS (
    SELECT a.product_id AS product_a, b.product_id AS product_b, COUNT(*) AS co_view_count
    FROM human_views AS a
    JOIN human_views AS b ON a.session_id = b.session_id AND a.product_id < b.product_id
    GROUP BY a.product_id, b.product_id
    HAVING COUNT(*) >= 3
)
SELECT
    p.product_a,
    na.product_name AS product_a_name,
    p.product_b,
    nb.product_name AS product_b_name,
    p.co_view_count
FROM pair_counts AS p
JOIN product_names AS na ON na.product_id = p.product_a
JOIN product_names AS nb ON nb.product_id = p.product_b;
