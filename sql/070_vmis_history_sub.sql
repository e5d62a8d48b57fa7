-- Change feeds the recommender follows (RisingWave subscriptions; the embedded engine offers
-- the same through engine.subscribe(view) and its PostgreSQL tables flashrec_changes_<view>).
CREATE SUBSCRIPTION IF NOT EXISTS vmis_history_sub FROM vmis_history WITH (retention = '1h');
