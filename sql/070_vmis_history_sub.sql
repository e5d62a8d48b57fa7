-- Change feeds the recommender follows (RisingWave subscriptions; the embedded engine offers
-- the same through engine.subscribe(view) and the flashrec_changes table).
CREATE SUBSCRIPTION IF NOT EXISTS vmis_history_sub FROM vmis_history WITH (retention = '1h');
