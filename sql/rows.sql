--
-- rows: upsert_increment_rows(), the typed batch input (1.2): rows as
-- records whose field names are column names, no JSON per row
--
CREATE TABLE r_hourly (id bigserial PRIMARY KEY, test int NOT NULL, version text NOT NULL,
                       day date NOT NULL, hour int NOT NULL,
                       participants bigint NOT NULL DEFAULT 0, conversions bigint NOT NULL DEFAULT 0,
                       label text, first_seen text,
                       UNIQUE (test, version, day, hour));
CREATE TABLE r_events (test int, version text, day date, hour int, kind text);
INSERT INTO r_events
SELECT 1 + g % 3, CASE WHEN g % 2 = 0 THEN 'control' ELSE 'variant' END, DATE '2026-11-22',
       g % 4, CASE WHEN g % 5 = 0 THEN 'conversion' ELSE 'participant' END
FROM generate_series(1, 120) g;

-- every field not named in deltas is a key; duplicates merged
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT test, version, day, hour, 1 AS participants FROM r_events) e;
-- the same again: all updates
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT test, version, day, hour, 1 AS participants FROM r_events) e;
-- the result equals the hand-written GROUP BY
SELECT count(*) AS keys, sum(participants) AS total,
       (SELECT count(*) FROM (
           SELECT test, version, day, hour, 2 * count(*) AS n FROM r_events GROUP BY 1, 2, 3, 4
           EXCEPT SELECT test, version, day, hour, participants FROM r_hourly) d) AS differing
FROM r_hourly;

-- two deltas, assign (the later row wins, in ORDER BY order) and on_insert
-- (the earlier wins); field types converted to the columns' (int to bigint,
-- text to date)
SELECT upsert_increment_rows('r_hourly', e, '{participants,conversions}', '{label}', '{first_seen}'
                             ORDER BY e.label)
FROM (SELECT 9 AS test, 'control' AS version, '2026-11-23' AS day, 0 AS hour,
             1 AS participants, (g % 2)::smallint AS conversions,
             'row ' || g AS label, 'seen ' || g AS first_seen
      FROM generate_series(1, 6) g) e;
SELECT test, version, day, hour, participants, conversions, label, first_seen
FROM r_hourly WHERE test = 9;

-- the same shape as the jsonb call: they share one cache entry
SELECT upsert_counter_cache_reset();
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT 1 AS test, 'control' AS version, DATE '2026-11-22' AS day, 0 AS hour, 1 AS participants) e;
SELECT upsert_increment('r_hourly', '{"test": 1, "version": "control", "day": "2026-11-22", "hour": 0}',
                        '{"participants": 1}');
SELECT key_columns, delta_columns, form, calls FROM upsert_counter_cache() ORDER BY form;

-- commit mode buffers typed rows too
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT 7 AS test, 'control' AS version, DATE '2026-11-22' AS day, g % 2 AS hour, 1 AS participants
      FROM generate_series(1, 10) g) e;
SELECT count(*) FROM r_hourly WHERE test = 7;
COMMIT;
SELECT hour, participants FROM r_hourly WHERE test = 7 ORDER BY hour;

-- errors
-- a name in deltas that is not a field of the row
SELECT upsert_increment_rows('r_hourly', e, '{participant}')
FROM (SELECT 1 AS test, 'control' AS version, DATE '2026-11-22' AS day, 0 AS hour, 1 AS participants) e;
\echo :LAST_ERROR_SQLSTATE
-- a field in two roles
SELECT upsert_increment_rows('r_hourly', e, '{participants}', '{participants}')
FROM (SELECT 1 AS test, 'control' AS version, DATE '2026-11-22' AS day, 0 AS hour, 1 AS participants) e;
\echo :LAST_ERROR_SQLSTATE
-- a field that is no column of the target
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT 1 AS test, 'control' AS version, DATE '2026-11-22' AS day, 0 AS hour, 1 AS participants,
             'x' AS extra) e;
\echo :LAST_ERROR_SQLSTATE
-- the keys match no unique index
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT 1 AS test, 'control' AS version, 1 AS participants) e;
\echo :LAST_ERROR_SQLSTATE
-- a NULL delta, a NULL key
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT 1 AS test, 'control' AS version, DATE '2026-11-22' AS day, 0 AS hour, NULL::int AS participants) e;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT 1 AS test, NULL::text AS version, DATE '2026-11-22' AS day, 0 AS hour, 1 AS participants) e;
\echo :LAST_ERROR_SQLSTATE
-- a value the column type cannot take: the type's own error
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT 1 AS test, 'control' AS version, 'not a date' AS day, 0 AS hour, 1 AS participants) e;
\echo :LAST_ERROR_SQLSTATE
-- out of range for the column's type
SELECT upsert_increment_rows('r_hourly', e, '{participants}')
FROM (SELECT 3000000000::bigint AS test, 'control' AS version, DATE '2026-11-22' AS day, 0 AS hour,
             1 AS participants) e;
\echo :LAST_ERROR_SQLSTATE
-- NULL target or row
SELECT upsert_increment_rows(NULL, e, '{participants}')
FROM (SELECT 1 AS test, 'control' AS version, DATE '2026-11-22' AS day, 0 AS hour, 1 AS participants) e;
\echo :LAST_ERROR_SQLSTATE
-- nothing was written by the failures
SELECT count(*), sum(participants) FROM r_hourly;

DROP TABLE r_hourly, r_events;
