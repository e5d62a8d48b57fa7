-- VMIS-kNN next-item recommendations as SQL functions, served by `flashrec udf-server`
-- (arrow-udf over Arrow Flight, recommender/serving/udf_server.py). External functions: no LANGUAGE clause.
-- The USING LINK literal is the UDF server's address, and `flashrec deploy --udf-link URL`
-- substitutes it (the default matches the `udf` service of docker-compose.yml).
-- Example: SELECT vmis_recommend(ARRAY['p1', 'p7'], 10)
CREATE FUNCTION IF NOT EXISTS vmis_recommend(items VARCHAR[], n INT)
RETURNS VARCHAR[]
AS vmis_recommend USING LINK 'http://udf:8815';

CREATE FUNCTION IF NOT EXISTS vmis_recommend_scored(items VARCHAR[], n INT)
RETURNS STRUCT<item_ids VARCHAR[], scores DOUBLE PRECISION[]>
AS vmis_recommend_scored USING LINK 'http://udf:8815';
