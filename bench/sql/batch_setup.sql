-- 1,000,000 input rows over 250,000 distinct keys; the target already holds
-- half of the keys.
DROP TABLE IF EXISTS batch_input, batch_target;
CREATE TABLE batch_input AS
SELECT 1 + (g % 250000) / 24 AS ab_test_id, 'control'::text AS version,
       DATE '2026-11-22' AS date, (g % 250000) % 24 AS hour, 1 + g % 3 AS participants
FROM generate_series(0, 999999) g;
CREATE TABLE batch_target (
    id bigserial PRIMARY KEY,
    ab_test_id int NOT NULL, version text NOT NULL, date date NOT NULL, hour int NOT NULL,
    participants bigint NOT NULL DEFAULT 0, conversions bigint NOT NULL DEFAULT 0,
    UNIQUE (ab_test_id, version, date, hour)
);
VACUUM ANALYZE batch_input;
