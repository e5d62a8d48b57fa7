"""A small disk-backed S3-compatible object store for the embedded broker (tansu on s3://).

Runs as its own process (`python -m recommender.objectstore --dir D --port P`): objects are
files under D (recommender.objectstore.disk), served over HTTP on 127.0.0.1
(recommender.objectstore.server), and the record batches that every reader has stored are
deleted periodically (recommender.objectstore.retention).
"""
