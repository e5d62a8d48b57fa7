-- The clickstream every view reads: one JSON event per Kafka message
-- (recommender/clickstream.schema.json), each event_id once.
-- Topic: `clickstream_valid`, written by `flashrec relay`, which validates the producers'
-- topic `clickstream` with the engine's validator and sends what it refuses to
-- `clickstream_dlq` (the same dead-letter records as the embedded engine). The relay delivers
-- at least once, so a retried event can arrive twice.
-- Duplicates: PRIMARY KEY (event_id) with APPEND ONLY ON CONFLICT DO NOTHING keeps the first
-- copy of each event_id and drops later ones, as the embedded engine does; the table's output
-- stays append-only, so the views plan as over a source.
-- State: retention_seconds (31 days) lets compaction remove rows written longer ago than that,
-- which covers the longest look-back of any view (30 days, the customer views): a late copy
-- of an event still inside a view's window finds its first copy here.
-- No watermark: RisingWave's watermark filter drops rows older than the watermark, which
-- the embedded engine keeps; no view needs one (no EMIT ON WINDOW CLOSE).
-- The embedded engine maps this table onto its event store (recommender/sqlfiles.py,
-- CLICKSTREAM), which keeps the first copy of each event_id over the same horizon.
-- `flashrec deploy` points properties.bootstrap.server and topic at the cluster's broker.
CREATE TABLE IF NOT EXISTS clickstream (
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
    PRIMARY KEY (event_id)
) APPEND ONLY ON CONFLICT DO NOTHING WITH (
    connector = 'kafka',
    topic = 'clickstream_valid',
    properties.bootstrap.server = 'redpanda:9092',
    scan.startup.mode = 'earliest',
    retention_seconds = 2678400
) FORMAT PLAIN ENCODE JSON;
