--
-- cache: plans are prepared once, kept, and rebuilt from the catalogs when
-- DDL makes them stale
--
SELECT upsert_counter_cache_reset();
CREATE TABLE c (k int, day date, n int DEFAULT 0, m int DEFAULT 0, UNIQUE (k, day));

SELECT upsert_increment('c', '{"k": 1, "day": "2026-11-22"}', '{"n": 1}') FROM generate_series(1, 1);
SELECT upsert_increment('c', '{"k": 1, "day": "2026-11-22"}', '{"n": 1}');
SELECT upsert_increment('c', '{"k": 1, "day": "2026-11-22"}', '{"n": 1, "m": 1}');
SELECT upsert_increment('c', jsonb_build_object('k', g, 'day', '2026-11-22'), '{"n": 1}') FROM generate_series(1, 3) g;
SELECT * FROM upsert_increment_returning('c', '{"k": 1, "day": "2026-11-22"}', '{}');
SELECT target, arbiter, key_columns, delta_columns, assign_columns, on_insert_columns, form, calls, valid
FROM upsert_counter_cache() ORDER BY form, delta_columns;

-- renamed column: the old name is now an error, the new one works; the
-- entries are marked invalid at once
ALTER TABLE c RENAME COLUMN n TO hits;
SELECT DISTINCT valid FROM upsert_counter_cache();
SELECT upsert_increment('c', '{"k": 1, "day": "2026-11-22"}', '{"n": 1}');
SELECT upsert_increment('c', '{"k": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT k, day, hits, m FROM c ORDER BY k;

-- Swapped names: the same call now means another column.  A cache that
-- kept attribute numbers or types across the rename would write to the
-- wrong one.
ALTER TABLE c RENAME COLUMN hits TO tmp;
ALTER TABLE c RENAME COLUMN m TO hits;
ALTER TABLE c RENAME COLUMN tmp TO m;
SELECT upsert_increment('c', '{"k": 1, "day": "2026-11-22"}', '{"hits": 100}');
SELECT k, day, hits, m FROM c WHERE k = 1;
ALTER TABLE c RENAME COLUMN hits TO tmp;
ALTER TABLE c RENAME COLUMN m TO hits;
ALTER TABLE c RENAME COLUMN tmp TO m;

-- renamed table and schema: cached SQL would name the old ones
CREATE SCHEMA s1;
ALTER TABLE c SET SCHEMA s1;
SELECT upsert_increment('s1.c', '{"k": 1, "day": "2026-11-22"}', '{"hits": 1}');
ALTER SCHEMA s1 RENAME TO s2;
SELECT upsert_increment('s2.c', '{"k": 1, "day": "2026-11-22"}', '{"hits": 1}');
ALTER TABLE s2.c RENAME TO c2;
SELECT upsert_increment('s2.c2', '{"k": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT k, day, hits FROM s2.c2 WHERE k = 1;

-- dropped and recreated unique index (the constraint's name changes)
ALTER TABLE s2.c2 DROP CONSTRAINT c_k_day_key;
SELECT upsert_increment('s2.c2', '{"k": 1, "day": "2026-11-22"}', '{"hits": 1}');
\echo :LAST_ERROR_SQLSTATE
CREATE UNIQUE INDEX c2_new_key ON s2.c2 (day, k);
SELECT upsert_increment('s2.c2', '{"k": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT arbiter, key_columns, form, valid FROM upsert_counter_cache()
WHERE target = 's2.c2'::regclass AND delta_columns = '{hits}' ORDER BY form;
SELECT k, day, hits FROM s2.c2 WHERE k = 1;

-- changed column type: the new type's range applies
ALTER TABLE s2.c2 ALTER COLUMN hits TYPE bigint;
SELECT upsert_increment('s2.c2', '{"k": 1, "day": "2026-11-22"}', '{"hits": 3000000000}');
SELECT k, day, hits FROM s2.c2 WHERE k = 1;

-- dropped and recreated table of the same name
DROP TABLE s2.c2;
CREATE TABLE s2.c2 (day date, k int, hits smallint, PRIMARY KEY (k, day));
SELECT upsert_increment('s2.c2', '{"k": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('s2.c2', '{"k": 1, "day": "2026-11-22"}', '{"hits": 40000}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM s2.c2;

-- search_path: the same name resolves to another table, and each call
-- writes to the table its target named
CREATE SCHEMA early;
CREATE TABLE public.sp (k int PRIMARY KEY, n int);
SELECT upsert_increment('sp', '{"k": 1}', '{"n": 1}');
CREATE TABLE early.sp (k int PRIMARY KEY, n int);
SET search_path = early, public;
SELECT upsert_increment('sp', '{"k": 1}', '{"n": 10}');
RESET search_path;
SELECT upsert_increment('sp', '{"k": 1}', '{"n": 1}');
SELECT 'public' AS schema, * FROM public.sp UNION ALL SELECT 'early', * FROM early.sp ORDER BY 1;
-- A cached plan does not depend on search_path: with an empty path it
-- still names everything it needs.
SELECT upsert_increment('public.sp', '{"k": 1}', '{"n": 1}');
SET search_path = '';
SELECT public.upsert_increment('public.sp', '{"k": 1}', '{"n": 1}');
SELECT public.upsert_increment('public.sp', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 2) g;
RESET search_path;
SELECT * FROM public.sp ORDER BY k;

-- The cache is bounded: the least recently used shape goes first.
SELECT upsert_counter_cache_reset();
SELECT count(*) FROM upsert_counter_cache();
SET upsert_counter.cache_size = 2;
SELECT upsert_increment('sp', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('sp', '{"k": 1}', '{}', '{"n": 1}');
SELECT upsert_increment('sp', '{"k": 1}', '{}', NULL, '{"n": 1}');
SELECT delta_columns, assign_columns, on_insert_columns, calls FROM upsert_counter_cache() ORDER BY 1, 2, 3;
SELECT upsert_increment('sp', '{"k": 1}', '{}', '{"n": 1}');
SELECT upsert_increment('sp', '{"k": 2}', '{"n": 1}');
SELECT delta_columns, assign_columns, on_insert_columns, calls FROM upsert_counter_cache() ORDER BY 1, 2, 3;
RESET upsert_counter.cache_size;

-- Calls that fail to resolve leave no entry behind.
SELECT upsert_counter_cache_reset();
SELECT upsert_increment('sp', '{"k": 1}', '{"nope": 1}');
SELECT count(*) FROM upsert_counter_cache();
