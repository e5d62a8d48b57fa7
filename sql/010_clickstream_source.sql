-- The raw clickstream: one JSON event per Kafka message (recommender/clickstream.schema.json).
-- A SOURCE stores nothing; the views below keep only the state their temporal filters need.
-- The watermark lets late events through up to 5 minutes behind the newest one seen.
-- `flashrec deploy` points properties.bootstrap.server at the cluster's broker.
CREATE SOURCE IF NOT EXISTS clickstream (
    event_id VARCHAR,
    session_id VARCHAR,
    user_id VARCHAR,
    product_id VARCHAR,
    product_name VARCHAR,
    category VARCHAR,
    action VARCHAR,
    ts TIMESTAMPTZ,
    device VARCHAR,
    price DOUBLE PRECISION,
    WATERMARK FOR ts AS ts - INTERVAL '5 MINUTES'
) WITH (
    connector = 'kafka',
    topic = 'clickstream',
    properties.bootstrap.server = 'redpanda:9092',
    scan.startup.mode = 'earliest'
) FORMAT PLAIN ENCODE JSON;
