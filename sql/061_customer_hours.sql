-- customer_hours: per customer, look-back window (1, 7, 14, 30 days) and UTC hour of day, the
-- histogram of visits (sessions, by the hour of their first event in the window) and of
-- purchases. Hours without a visit or purchase have no row. The hour is read in UTC
-- (AT TIME ZONE 'UTC'), whatever the time zone of the session that deployed the view.
CREATE MATERIALIZED VIEW IF NOT EXISTS customer_hours AS
WITH windowed AS (
    SELECT user_id, session_id, action, ts, 1 AS window_days
    FROM clickstream WHERE ts > NOW() - INTERVAL '1 DAY'
    UNION ALL
    SELECT user_id, session_id, action, ts, 7 AS window_days
    FROM clickstream WHERE ts > NOW() - INTERVAL '7 DAYS'
    UNION ALL
    SELECT user_id, session_id, action, ts, 14 AS window_days
    FROM clickstream WHERE ts > NOW() - INTERVAL '14 DAYS'
    UNION ALL
    SELECT user_id, session_id, action, ts, 30 AS window_days
    FROM clickstream WHERE ts > NOW() - INTERVAL '30 DAYS'
),
visits AS (
    SELECT user_id, window_days, EXTRACT(HOUR FROM MIN(ts) AT TIME ZONE 'UTC') AS hour_of_day,
           1 AS visits, 0 AS purchases
    FROM windowed
    GROUP BY user_id, window_days, session_id
),
buys AS (
    SELECT user_id, window_days, EXTRACT(HOUR FROM ts AT TIME ZONE 'UTC') AS hour_of_day,
           0 AS visits, 1 AS purchases
    FROM windowed
    WHERE action = 'purchase'
)
SELECT user_id, window_days, CAST(hour_of_day AS INT) AS hour_of_day,
       SUM(visits) AS visits, SUM(purchases) AS purchases
FROM (SELECT * FROM visits UNION ALL SELECT * FROM buys) AS both_kinds
GROUP BY user_id, window_days, CAST(hour_of_day AS INT);
