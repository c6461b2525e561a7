--
-- fastupdate: the update path of a single-row call without the executor
-- (1.2), used only where it does exactly what the statement does.  The
-- form "fast_update" in upsert_counter_cache() counts its updates.
--
CREATE FUNCTION fast_calls(t regclass) RETURNS bigint LANGUAGE sql AS
$$SELECT coalesce(sum(calls), 0)::bigint FROM upsert_counter_cache()
  WHERE target = t AND form = 'fast_update'$$;

-- A plain counter table: the first call inserts (SQL path), the next ones
-- update directly.
CREATE TABLE f_plain (id bigserial PRIMARY KEY, k int NOT NULL, day date NOT NULL,
                      n bigint NOT NULL DEFAULT 0, m int, label text,
                      UNIQUE (k, day));
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"n": 1}');
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"n": 2}');
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"n": 3, "m": 5}', '{"label": "x"}');
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"m": 1}', '{"label": null}');
SELECT fast_calls('f_plain');
-- a NULL delta column counts from 0, as COALESCE(t.m, 0) does
SELECT k, day, n, m, label FROM f_plain;
-- the proposed row's defaults are evaluated as the statement evaluates
-- them: the serial id's sequence advances on every call, as it does there
SELECT last_value AS before FROM f_plain_id_seq \gset
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"n": 0}');
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"n": 0}');
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"n": 0}');
SELECT last_value - :before AS advanced, fast_calls('f_plain') FROM f_plain_id_seq;
SELECT upsert_increment('f_plain', '{"k": 2, "day": "2026-11-22"}', '{"n": 1}');
-- overflow is the type's own error, and nothing is written
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"m": 1}');
UPDATE f_plain SET m = 2147483647 WHERE k = 1;
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"m": 1}');
\echo :LAST_ERROR_SQLSTATE
UPDATE f_plain SET m = 6 WHERE k = 1;
-- a NULL key: the SQL path, and its error
SELECT upsert_increment('f_plain', '{"k": 1, "day": null}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- in a transaction, each call sees the one before it
BEGIN;
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"n": 10}');
SELECT upsert_increment('f_plain', '{"k": 1, "day": "2026-11-22"}', '{"n": 10}');
SELECT n FROM f_plain WHERE k = 1;
ROLLBACK;
SELECT n FROM f_plain WHERE k = 1;
-- a PL/pgSQL loop: one statement, many calls
DO $$BEGIN FOR i IN 1..100 LOOP PERFORM upsert_increment('f_plain', '{"k": 2, "day": "2026-11-22"}', '{"n": 1}'); END LOOP; END$$;
SELECT n FROM f_plain WHERE k = 2;

-- Privileges are the statement's: INSERT and UPDATE, per column.
CREATE ROLE regress_uc_fast;
GRANT SELECT, INSERT ON f_plain TO regress_uc_fast;
GRANT UPDATE (n) ON f_plain TO regress_uc_fast;
SET ROLE regress_uc_fast;
-- the proposed row's nextval() needs USAGE on the sequence, on either path
SELECT upsert_increment('f_plain', '{"k": 2, "day": "2026-11-22"}', '{"n": 1}');
SELECT upsert_increment('f_plain', '{"k": 2, "day": "2026-11-22"}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT USAGE ON SEQUENCE f_plain_id_seq TO regress_uc_fast;
SET ROLE regress_uc_fast;
SELECT upsert_increment('f_plain', '{"k": 2, "day": "2026-11-22"}', '{"n": 1}');
SELECT upsert_increment('f_plain', '{"k": 2, "day": "2026-11-22"}', '{"n": 1}');
SELECT upsert_increment('f_plain', '{"k": 2, "day": "2026-11-22"}', '{"m": 1}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE INSERT ON f_plain FROM regress_uc_fast;
SET ROLE regress_uc_fast;
SELECT upsert_increment('f_plain', '{"k": 2, "day": "2026-11-22"}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP OWNED BY regress_uc_fast;
DROP ROLE regress_uc_fast;

-- Constraints are checked on the proposed insert row first, as ExecInsert()
-- does, then on the updated row: the same errors on either path.
CREATE TABLE f_check (k int PRIMARY KEY, n int CHECK (n >= 0) CHECK (n < 8),
                      must text NOT NULL, dflt text NOT NULL DEFAULT 'd');
INSERT INTO f_check VALUES (1, 5, 'x');
SELECT upsert_increment('f_check', '{"k": 1}', '{"n": 1}', NULL, '{"must": "y"}');
SELECT upsert_increment('f_check', '{"k": 1}', '{"n": 1}', NULL, '{"must": "y"}');
-- the proposed row (1, -1, ...) fails n >= 0, though 7 - 1 would not
SELECT upsert_increment('f_check', '{"k": 1}', '{"n": -1}', NULL, '{"must": "y"}');
\echo :LAST_ERROR_SQLSTATE
-- the proposed row lacks "must"
SELECT upsert_increment('f_check', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- the updated row (1, 10) fails n < 8
SELECT upsert_increment('f_check', '{"k": 1}', '{"n": 3}', NULL, '{"must": "y"}');
\echo :LAST_ERROR_SQLSTATE
SELECT fast_calls('f_check'), (SELECT n FROM f_check);
SET upsert_counter.fast_update = off;
SELECT upsert_increment('f_check', '{"k": 1}', '{"n": -1}', NULL, '{"must": "y"}');
SELECT upsert_increment('f_check', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('f_check', '{"k": 1}', '{"n": 3}', NULL, '{"must": "y"}');
RESET upsert_counter.fast_update;

-- Where the statement does more, the SQL path runs: no fast_update.
-- a trigger
CREATE TABLE f_trig (k int PRIMARY KEY, n int);
CREATE FUNCTION f_trig_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER f_trig BEFORE UPDATE ON f_trig FOR EACH ROW EXECUTE FUNCTION f_trig_fn();
-- row-level security
CREATE TABLE f_rls (k int PRIMARY KEY, n int);
ALTER TABLE f_rls ENABLE ROW LEVEL SECURITY;
-- a stored generated column
CREATE TABLE f_gen (k int PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) STORED);
-- a domain delta, a delta with a typmod
CREATE DOMAIN f_small AS int;
CREATE TABLE f_dom (k int PRIMARY KEY, n f_small);
CREATE TABLE f_typmod (k int PRIMARY KEY, n numeric(6, 2));
-- an unnamed column of a domain type without a default
CREATE TABLE f_domcol (k int PRIMARY KEY, n int, other f_small);
-- a partitioned table
CREATE TABLE f_part (k int PRIMARY KEY, n int) PARTITION BY RANGE (k);
CREATE TABLE f_part1 PARTITION OF f_part FOR VALUES FROM (0) TO (10);
SELECT t, upsert_increment_call(t, '{"k": 1}', '{"n": 1}') AS first
FROM unnest(ARRAY['f_trig', 'f_rls', 'f_gen', 'f_dom', 'f_typmod', 'f_domcol', 'f_part']::regclass[]) t;
SELECT t, upsert_increment_call(t, '{"k": 1}', '{"n": 1}') AS second
FROM unnest(ARRAY['f_trig', 'f_rls', 'f_gen', 'f_dom', 'f_typmod', 'f_domcol', 'f_part']::regclass[]) t;
SELECT t, upsert_increment_call(t, '{"k": 1}', '{"n": 1}') AS third, fast_calls(t)
FROM unnest(ARRAY['f_trig', 'f_rls', 'f_gen', 'f_dom', 'f_typmod', 'f_domcol', 'f_part']::regclass[]) t;
SELECT (SELECT n FROM f_trig), (SELECT n FROM f_rls), (SELECT twice FROM f_gen),
       (SELECT n FROM f_dom), (SELECT n FROM f_typmod), (SELECT n FROM f_domcol), (SELECT n FROM f_part);

-- The two paths agree: the same calls on two identical tables, one with
-- the direct path off, leave the same rows, ids (sequence values) included.
CREATE TABLE f_eq_on (id serial PRIMARY KEY, k int NOT NULL, g text NOT NULL,
                      n bigint DEFAULT 0, x numeric, f float8, label text DEFAULT 'new',
                      at timestamptz DEFAULT '2026-01-01', UNIQUE (k, g));
CREATE TABLE f_eq_off (id serial PRIMARY KEY, k int NOT NULL, g text NOT NULL,
                      n bigint DEFAULT 0, x numeric, f float8, label text DEFAULT 'new',
                      at timestamptz DEFAULT '2026-01-01', UNIQUE (k, g));
CREATE TABLE f_eq_calls AS
SELECT i, jsonb_build_object('k', i % 5, 'g', CASE WHEN i % 3 = 0 THEN 'a' ELSE 'b' END) AS keys,
       jsonb_build_object('n', i % 4 - 1, 'x', (i % 7) * 0.5, 'f', i * 0.25) AS deltas,
       CASE WHEN i % 6 = 0 THEN jsonb_build_object('label', 'call ' || i) END AS assign
FROM generate_series(1, 60) i;
DO $$
DECLARE c record;
BEGIN
	FOR c IN SELECT * FROM f_eq_calls ORDER BY i LOOP
		PERFORM set_config('upsert_counter.fast_update', 'on', true);
		PERFORM upsert_increment('f_eq_on', c.keys, c.deltas, c.assign);
		PERFORM set_config('upsert_counter.fast_update', 'off', true);
		PERFORM upsert_increment('f_eq_off', c.keys, c.deltas, c.assign);
	END LOOP;
END$$;
SELECT fast_calls('f_eq_on') > 40 AS mostly_direct, fast_calls('f_eq_off') AS direct_when_off;
SELECT count(*) AS rows, (SELECT count(*) FROM (SELECT * FROM f_eq_on EXCEPT SELECT * FROM f_eq_off) d) AS differing
FROM f_eq_on;
SELECT * FROM f_eq_on ORDER BY k, g LIMIT 3;

-- REPEATABLE READ and SERIALIZABLE take the SQL path.
CREATE TABLE f_iso (k int PRIMARY KEY, n int);
INSERT INTO f_iso VALUES (1, 0);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT upsert_increment('f_iso', '{"k": 1}', '{"n": 1}');
COMMIT;
SELECT fast_calls('f_iso');
SELECT upsert_increment('f_iso', '{"k": 1}', '{"n": 1}');
SELECT fast_calls('f_iso'), (SELECT n FROM f_iso);

-- A foreign key on a key column: direct, except for a row this
-- transaction inserted (its foreign key check must fire).
CREATE TABLE f_parent (id int PRIMARY KEY);
INSERT INTO f_parent VALUES (1);
CREATE TABLE f_fk (k int PRIMARY KEY REFERENCES f_parent, n int);
SELECT upsert_increment('f_fk', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('f_fk', '{"k": 1}', '{"n": 1}');
SELECT fast_calls('f_fk');
BEGIN;
INSERT INTO f_parent VALUES (2);
SELECT upsert_increment('f_fk', '{"k": 2}', '{"n": 1}');
SELECT upsert_increment('f_fk', '{"k": 2}', '{"n": 1}');
SELECT fast_calls('f_fk');
COMMIT;
SELECT * FROM f_fk ORDER BY k;
-- a foreign key on a delta column is not direct
CREATE TABLE f_fk_delta (k int PRIMARY KEY, n int REFERENCES f_parent);
INSERT INTO f_fk_delta VALUES (1, 1);
SELECT upsert_increment('f_fk_delta', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('f_fk_delta', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT fast_calls('f_fk_delta'), (SELECT n FROM f_fk_delta);

-- upsert_counter.fast_update = off runs every call through the plan.
SET upsert_counter.fast_update = off;
SELECT upsert_counter_cache_reset();
SELECT upsert_increment('f_iso', '{"k": 1}', '{"n": 1}');
SELECT fast_calls('f_iso'), (SELECT n FROM f_iso);
RESET upsert_counter.fast_update;

DROP TABLE f_plain, f_check, f_trig, f_rls, f_gen, f_dom, f_typmod, f_domcol, f_part, f_iso,
	f_fk, f_fk_delta, f_parent, f_eq_on, f_eq_off, f_eq_calls;
DROP FUNCTION f_trig_fn(), fast_calls(regclass);
DROP DOMAIN f_small;
