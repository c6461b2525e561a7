--
-- single_row: one call upserts one row
--
CREATE TABLE hits (
    id bigserial PRIMARY KEY,
    page text NOT NULL,
    day date NOT NULL,
    views bigint NOT NULL DEFAULT 0,
    clicks integer,
    UNIQUE (page, day)
);

-- The first call creates the row, the following ones add to it.
SELECT upsert_increment('hits', '{"page": "/", "day": "2026-11-22"}', '{"views": 1}');
SELECT upsert_increment('hits', '{"page": "/", "day": "2026-11-22"}', '{"views": 1}');
SELECT upsert_increment('hits', '{"day": "2026-11-22", "page": "/"}', '{"views": 5}');
SELECT page, day, views, clicks FROM hits ORDER BY id;

-- Negative and fractional-free deltas; a nullable counter starts at the
-- delta and COALESCE makes a NULL stored value count as 0.
SELECT upsert_increment('hits', '{"page": "/", "day": "2026-11-22"}', '{"views": -2, "clicks": 3}');
UPDATE hits SET clicks = NULL WHERE page = '/';
SELECT upsert_increment('hits', '{"page": "/", "day": "2026-11-22"}', '{"clicks": 4}');
SELECT page, day, views, clicks FROM hits ORDER BY id;

-- Another key is another row.
SELECT upsert_increment('hits', '{"page": "/about", "day": "2026-11-22"}', '{"views": 1, "clicks": 0}');
SELECT page, day, views, clicks FROM hits ORDER BY id;

-- Empty deltas: only make sure the row exists (get-or-create).
SELECT upsert_increment('hits', '{"page": "/new", "day": "2026-11-23"}', '{}');
SELECT upsert_increment('hits', '{"page": "/new", "day": "2026-11-23"}', '{}');
SELECT page, day, views, clicks FROM hits WHERE page = '/new';

-- upsert_increment_returning() returns the row as it now is.
SELECT * FROM upsert_increment_returning('hits', '{"page": "/", "day": "2026-11-22"}', '{"views": 10}');
SELECT inserted, new_row->>'page' AS page, (new_row->>'views')::int AS views
FROM upsert_increment_returning('hits', '{"page": "/r", "day": "2026-11-22"}', '{"views": 2}');
-- ... including get-or-create, for a row that exists and one that does not
SELECT inserted, new_row->>'page' AS page, (new_row->>'views')::int AS views
FROM upsert_increment_returning('hits', '{"page": "/r", "day": "2026-11-22"}', '{}');
SELECT inserted, new_row->>'page' AS page, (new_row->>'views')::int AS views
FROM upsert_increment_returning('hits', '{"page": "/r2", "day": "2026-11-22"}', '{}');

-- The writes belong to the caller's transaction.
BEGIN;
SELECT upsert_increment('hits', '{"page": "/", "day": "2026-11-22"}', '{"views": 1000}');
SELECT upsert_increment('hits', '{"page": "/tx", "day": "2026-11-22"}', '{"views": 1}');
ROLLBACK;
SELECT page, views FROM hits WHERE page IN ('/', '/tx') ORDER BY page;

-- In a transaction, later calls see earlier ones.
BEGIN;
SELECT upsert_increment('hits', '{"page": "/tx", "day": "2026-11-22"}', '{"views": 1}');
SELECT upsert_increment('hits', '{"page": "/tx", "day": "2026-11-22"}', '{"views": 1}');
SELECT page, views FROM hits WHERE page = '/tx';
COMMIT;

-- Target given by OID, schema-qualified name, and a table whose names need
-- quoting everywhere (including a table called "excluded").
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Odd ""Table""" ("Key Col" text PRIMARY KEY, "n;drop" int DEFAULT 0);
SELECT upsert_increment('"My Schema"."Odd ""Table"""', '{"Key Col": "a"}', '{"n;drop": 2}');
SELECT upsert_increment('"My Schema"."Odd ""Table"""'::regclass::oid::regclass,
                        '{"Key Col": "a"}', '{"n;drop": 3}');
SELECT * FROM "My Schema"."Odd ""Table""";
CREATE TABLE excluded (key int PRIMARY KEY, n int);
SELECT upsert_increment('excluded', '{"key": 1}', '{"n": 1}');
SELECT upsert_increment('excluded', '{"key": 1}', '{"n": 1}');
SELECT * FROM excluded;

-- A table that has lost a column keeps working (dropped columns leave gaps).
CREATE TABLE dropcol (a int, gone int, b int, n int, UNIQUE (a, b));
ALTER TABLE dropcol DROP COLUMN gone;
SELECT upsert_increment('dropcol', '{"a": 1, "b": 2}', '{"n": 5}');
SELECT upsert_increment('dropcol', '{"a": 1, "b": 2}', '{"n": 5}');
SELECT * FROM dropcol;

-- Columns not named get their defaults on insert.  As with a hand-written
-- INSERT ... ON CONFLICT, NOT NULL is checked on the proposed row before the
-- conflict is found, so a NOT NULL column without a default fails even
-- when the row exists.
SELECT upsert_increment('hits', jsonb_build_object('id', id), '{"views": 1}')
FROM hits WHERE page = '/about';
\echo :LAST_ERROR_SQLSTATE

-- A FROM-less call is planned as a plain function call (1.2): the same
-- result as the aggregate over one row, which a FROM clause keeps.
CREATE TABLE fast (k int PRIMARY KEY, n int);
EXPLAIN (COSTS OFF, VERBOSE) SELECT upsert_increment('fast', '{"k": 1}', '{"n": 1}');
EXPLAIN (COSTS OFF, VERBOSE) SELECT upsert_increment('fast', '{"k": 1}', '{"n": 1}') FROM (VALUES (1)) v;
SELECT upsert_increment('fast', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('fast', '{"k": 1}', '{"n": 1}') FROM (VALUES (1)) v;
SELECT upsert_increment('fast', '{"k": 2}', '{"n": 1}') FROM (VALUES (1)) v;
SELECT upsert_increment('fast', '{"k": 2}', '{"n": 1}', '{}', '{}');
-- with parameters (a prepared statement, as drivers send it)
PREPARE fast_call(regclass, jsonb, jsonb) AS SELECT upsert_increment($1, $2, $3);
EXECUTE fast_call('fast', '{"k": 3}', '{"n": 5}');
EXECUTE fast_call('fast', '{"k": 3}', '{"n": 5}');
DEALLOCATE fast_call;
-- shapes that stay aggregates: FILTER, two calls
EXPLAIN (COSTS OFF) SELECT upsert_increment('fast', '{"k": 1}', '{"n": 1}') FILTER (WHERE true);
EXPLAIN (COSTS OFF) SELECT upsert_increment('fast', '{"k": 1}', '{"n": 1}'), upsert_increment('fast', '{"k": 2}', '{"n": 1}');
-- the plain function, called directly, and in commit mode
SELECT upsert_increment_call('fast', '{"k": 4}', '{"n": 1}');
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('fast', '{"k": 4}', '{"n": 1}');
SELECT upsert_increment_call('fast', '{"k": 4}', '{"n": 1}');
COMMIT;
SELECT upsert_increment_call('fast', NULL, '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM fast ORDER BY k;
DROP TABLE fast;
