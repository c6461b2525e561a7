--
-- pg18: what PostgreSQL 18 adds that a call meets (run on 18 and later
-- only; the Makefile adds it there).
--
\set SHOW_CONTEXT never

-- Virtual generated columns: computed when read, never stored.  A call
-- cannot write one, and every form writes the rest and reads it back.
CREATE TABLE v_hits (k int PRIMARY KEY, n int NOT NULL DEFAULT 0,
                     twice int GENERATED ALWAYS AS (n * 2) VIRTUAL,
                     label text, CHECK (twice < 100));
SELECT upsert_increment('v_hits', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('v_hits', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('v_hits', '{"k": 1}', '{"n": 1}', '{"label": "x"}');
SELECT upsert_increment('v_hits', jsonb_build_object('k', g % 3), '{"n": 1}') FROM generate_series(1, 9) g;
SELECT upsert_increment_rows('v_hits', r, '{n}') FROM (SELECT g % 3 AS k, 1 AS n FROM generate_series(1, 9) g) r;
SELECT * FROM upsert_increment_returning('v_hits', '{"k": 1}', '{"n": 1}');
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('v_hits', '{"k": 2}', '{"n": 10}');
COMMIT;
SELECT * FROM v_hits ORDER BY k;
-- the CHECK on the virtual column holds on the update path
SELECT upsert_increment('v_hits', '{"k": 1}', '{"n": 100}');
\echo :LAST_ERROR_SQLSTATE
-- it cannot be written
SELECT upsert_increment('v_hits', '{"k": 1}', '{"twice": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('v_hits', '{"k": 1}', '{}', '{"twice": 1}');
\echo :LAST_ERROR_SQLSTATE
-- nor be a key
SELECT upsert_increment('v_hits', '{"twice": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- a column added as virtual after the plan was cached is in the next row
ALTER TABLE v_hits ADD COLUMN thrice int GENERATED ALWAYS AS (n * 3) VIRTUAL;
SELECT * FROM upsert_increment_returning('v_hits', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('v_hits', '{"k": 1}', '{"n": 1}');
SELECT k, n, twice, thrice FROM v_hits WHERE k = 1;

-- A temporal key (WITHOUT OVERLAPS) is an exclusion constraint: ON
-- CONFLICT DO UPDATE cannot use it, so a call names no usable arbiter.
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE v_temporal (id int, valid_at daterange, n int,
                         PRIMARY KEY (id, valid_at WITHOUT OVERLAPS));
SELECT upsert_increment('v_temporal', '{"id": 1, "valid_at": "[2026-01-01,2026-02-01)"}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE

-- NOT ENFORCED constraints are not checked, by the statement nor a call.
CREATE TABLE v_unenforced (k int PRIMARY KEY, n int NOT NULL DEFAULT 0,
                           CHECK (n < 5) NOT ENFORCED);
SELECT upsert_increment('v_unenforced', '{"k": 1}', '{"n": 10}');
INSERT INTO v_unenforced AS t (k, n) VALUES (1, 10) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
SELECT * FROM v_unenforced;

DROP TABLE v_hits, v_temporal, v_unenforced;
DROP EXTENSION btree_gist;
