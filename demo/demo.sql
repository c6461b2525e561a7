-- upsert_counter demo: the wagtail-ab-testing hourly log, end to end.
-- Run by `make demo` against a throwaway cluster; every statement is echoed.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS upsert_counter;

-- The table wagtail-ab-testing keeps: one row per test, version, date, hour.
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

\echo
\echo '== 1. One call per event: the first creates the row, the next ones add to it'
SELECT upsert_increment('ab_hourly',
       '{"ab_test_id": 7, "version": "control", "date": "2026-11-22", "hour": 13}',
       '{"participants": 1}');
SELECT upsert_increment('ab_hourly',
       '{"ab_test_id": 7, "version": "control", "date": "2026-11-22", "hour": 13}',
       '{"participants": 1, "conversions": 1}');
SELECT ab_test_id, version, date, hour, participants, conversions FROM ab_hourly;

\echo
\echo '== 2. The row back, as update_or_create would give it'
SELECT inserted, new_row
FROM upsert_increment_returning('ab_hourly',
       '{"ab_test_id": 7, "version": "variant", "date": "2026-11-22", "hour": 13}',
       '{"participants": 1}');

\echo
\echo '== 3. A day of traffic as one batch: 100000 events, duplicate keys merged, written in key order'
CREATE TEMP TABLE events AS
SELECT 1 + g % 3 AS ab_test_id,
       CASE WHEN g % 7 < 4 THEN 'control' ELSE 'variant' END AS version,
       DATE '2026-11-22' AS date, (g * 13) % 24 AS hour,
       (g % 5 <> 0)::int AS participants, (g % 5 = 0)::int AS conversions
FROM generate_series(1, 100000) g;
\timing on
SELECT upsert_increment('ab_hourly',
       jsonb_build_object('ab_test_id', ab_test_id, 'version', version, 'date', date, 'hour', hour),
       jsonb_build_object('participants', participants, 'conversions', conversions))
FROM events;
\timing off
SELECT count(*) AS rows, sum(participants) AS participants, sum(conversions) AS conversions
FROM ab_hourly WHERE ab_test_id <> 7;

\echo
\echo '== 4. The same batch written by hand fails on duplicate keys'
\set ON_ERROR_STOP 0
INSERT INTO ab_hourly AS t (ab_test_id, version, date, hour, participants, conversions)
SELECT ab_test_id, version, date, hour, participants, conversions FROM events
ON CONFLICT (ab_test_id, version, date, hour)
DO UPDATE SET participants = t.participants + EXCLUDED.participants;
\set ON_ERROR_STOP 1

\echo
\echo '== 5. Exact: the counts equal a GROUP BY over the events'
SELECT count(*) AS mismatches
FROM (SELECT ab_test_id, version, date, hour,
             sum(participants) AS p, sum(conversions) AS c
      FROM events GROUP BY 1, 2, 3, 4) e
JOIN ab_hourly h USING (ab_test_id, version, date, hour)
WHERE h.participants <> e.p OR h.conversions <> e.c;

\echo
\echo '== 5b. The same events again as typed rows (upsert_increment_rows, no JSON per row): every count doubles'
\timing on
SELECT upsert_increment_rows('ab_hourly', e, '{participants,conversions}') FROM events e;
\timing off
SELECT count(*) AS mismatches
FROM (SELECT ab_test_id, version, date, hour,
             sum(participants) AS p, sum(conversions) AS c
      FROM events GROUP BY 1, 2, 3, 4) e
JOIN ab_hourly h USING (ab_test_id, version, date, hour)
WHERE h.participants <> 2 * e.p OR h.conversions <> 2 * e.c;

\echo
\echo '== 6. Bad input is a clear error, never a wrong count'
\set ON_ERROR_STOP 0
SELECT upsert_increment('ab_hourly', '{"ab_test_id": 7, "version": "control"}', '{"participants": 1}');
SELECT upsert_increment('ab_hourly',
       '{"ab_test_id": 7, "version": "control", "date": "2026-11-22", "hour": 13}',
       '{"participants": 1.5}');
\set ON_ERROR_STOP 1

\echo
\echo '== 7. What this backend has cached: one plan per shape and form'
SELECT target, arbiter, key_columns, delta_columns, form, calls FROM upsert_counter_cache()
ORDER BY form, delta_columns;
