-- session_intent: the purchase probability of each live session, written by the intent scorer
-- (`flashrec intent score`, recommender/intent/score.py), not maintained by the engine. A row
-- is rewritten each time the session's features change (a new event): probability that the
-- session ends in a purchase (or that the customer buys within the model's horizon), the
-- model version that scored it, the clock of the features and when it was scored. Sessions
-- that already bought have probability 1 and purchased = true. Bot sessions get no row.
CREATE TABLE IF NOT EXISTS session_intent (
    session_id VARCHAR PRIMARY KEY,
    user_id VARCHAR,
    probability DOUBLE PRECISION,
    purchased BOOLEAN,
    event_count BIGINT,
    model_version VARCHAR,
    features_at TIMESTAMPTZ,
    scored_at TIMESTAMPTZ
);
