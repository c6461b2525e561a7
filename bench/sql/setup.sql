-- The wagtail-ab-testing hourly log, pre-filled with every key the
-- single-row workloads use (10000 tests x 24 hours = 240000 keys), so every
-- workload measures the path counters take nearly always: the update.
CREATE EXTENSION IF NOT EXISTS upsert_counter;
DROP TABLE IF EXISTS ab_hourly;
CREATE TABLE ab_hourly (
    id bigserial PRIMARY KEY,
    ab_test_id int NOT NULL,
    version text NOT NULL,
    date date NOT NULL,
    hour int NOT NULL,
    participants bigint NOT NULL DEFAULT 0,
    conversions bigint NOT NULL DEFAULT 0,
    UNIQUE (ab_test_id, version, date, hour)
);
INSERT INTO ab_hourly (ab_test_id, version, date, hour)
SELECT t, 'control', '2026-11-22', h FROM generate_series(1, 10000) t, generate_series(0, 23) h;
VACUUM ANALYZE ab_hourly;

CREATE OR REPLACE FUNCTION bench_plpgsql_upsert(p_test int, p_version text, p_date date, p_hour int, p_n bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ab_hourly AS t (ab_test_id, version, date, hour, participants)
    VALUES (p_test, p_version, p_date, p_hour, p_n)
    ON CONFLICT (ab_test_id, version, date, hour)
    DO UPDATE SET participants = t.participants + EXCLUDED.participants;
END
$$;
