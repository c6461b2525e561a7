--
-- wagtail: the wagtail-ab-testing hourly log, with upsert_increment()
-- against the hand-written SQL it replaces, on the same inputs
--
CREATE TABLE ab_hourly (
    id bigserial PRIMARY KEY,
    ab_test_id int NOT NULL,
    version varchar(9) NOT NULL,
    date date NOT NULL,
    hour int NOT NULL,
    participants bigint NOT NULL DEFAULT 0,
    conversions bigint NOT NULL DEFAULT 0,
    UNIQUE (ab_test_id, version, date, hour)
);
CREATE TABLE ab_hourly_raw (LIKE ab_hourly INCLUDING ALL);

-- 2000 events: participant or conversion, for 3 tests, 2 versions, 2 days
CREATE TABLE ab_events AS
SELECT g AS seq, 1 + g % 3 AS ab_test_id,
       CASE WHEN g % 7 < 4 THEN 'control' ELSE 'variant' END AS version,
       DATE '2026-11-22' + (g % 2) AS date, (g * 13) % 24 AS hour,
       (g % 5 <> 0)::int AS participants, (g % 5 = 0)::int AS conversions
FROM generate_series(1, 2000) g;

-- wagtail-ab-testing's statement, one event at a time
DO $$
DECLARE e record;
BEGIN
    FOR e IN SELECT * FROM ab_events ORDER BY seq LOOP
        INSERT INTO ab_hourly_raw AS t (ab_test_id, version, date, hour, participants, conversions)
        VALUES (e.ab_test_id, e.version, e.date, e.hour, e.participants, e.conversions)
        ON CONFLICT (ab_test_id, version, date, hour)
        DO UPDATE SET participants = t.participants + EXCLUDED.participants,
                      conversions = t.conversions + EXCLUDED.conversions;
    END LOOP;
END
$$;

-- ours, one call per event
DO $$
DECLARE e record;
BEGIN
    FOR e IN SELECT * FROM ab_events ORDER BY seq LOOP
        PERFORM upsert_increment('ab_hourly',
            jsonb_build_object('ab_test_id', e.ab_test_id, 'version', e.version,
                               'date', e.date, 'hour', e.hour),
            jsonb_build_object('participants', e.participants, 'conversions', e.conversions));
    END LOOP;
END
$$;

SELECT count(*) AS rows, sum(participants) AS participants, sum(conversions) AS conversions
FROM ab_hourly;
-- identical outcome (ids aside)
(SELECT ab_test_id, version, date, hour, participants, conversions FROM ab_hourly
 EXCEPT SELECT ab_test_id, version, date, hour, participants, conversions FROM ab_hourly_raw)
UNION ALL
(SELECT ab_test_id, version, date, hour, participants, conversions FROM ab_hourly_raw
 EXCEPT SELECT ab_test_id, version, date, hour, participants, conversions FROM ab_hourly);

-- the same events again, as one batch: every count doubles
SELECT upsert_increment('ab_hourly',
    jsonb_build_object('ab_test_id', ab_test_id, 'version', version, 'date', date, 'hour', hour),
    jsonb_build_object('participants', participants, 'conversions', conversions))
FROM ab_events;
SELECT count(*) FROM ab_hourly h JOIN ab_hourly_raw r USING (ab_test_id, version, date, hour)
WHERE h.participants <> 2 * r.participants OR h.conversions <> 2 * r.conversions;
