--
-- safety: privilege boundaries, memory safety and termination (1.2).
-- Each section failed before 1.2: with a crash, an endless loop, a write
-- under the wrong user, or a silently wrong count.
--
-- A safety net: a test that used to loop forever fails here instead.
SET statement_timeout = '20s';
CREATE ROLE regress_uc_owner;
CREATE ROLE regress_uc_caller;
GRANT CREATE ON SCHEMA public TO regress_uc_owner;

-- 1a. Commit mode refuses to buffer inside a security-restricted operation.
-- A table owner puts an index expression on her table that buffers a row
-- into her own counter table, whose trigger records who writes it.  A
-- superuser's ANALYZE runs that expression as her, inside the operation;
-- the row used to be written at commit with the superuser's rights.
SET ROLE regress_uc_owner;
CREATE TABLE sro_log (who text);
CREATE TABLE sro_counter (k int PRIMARY KEY, n int);
CREATE FUNCTION sro_log_writer() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN INSERT INTO sro_log VALUES (current_user); RETURN NEW; END$$;
CREATE TRIGGER sro_log_writer AFTER INSERT ON sro_counter
	FOR EACH ROW EXECUTE FUNCTION sro_log_writer();
CREATE FUNCTION sro_trap(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
$$BEGIN
	PERFORM set_config('upsert_counter.flush', 'commit', true);
	-- qualified: since 17 ANALYZE runs it with search_path pg_catalog, pg_temp
	PERFORM public.upsert_increment('public.sro_counter', jsonb_build_object('k', $1), '{"n": 1}');
	RETURN $1;
END$$;
CREATE TABLE sro_bait (x int);
CREATE INDEX sro_bait_trap ON sro_bait (sro_trap(x));
RESET ROLE;
INSERT INTO sro_bait VALUES (1);	-- buffered and written as the superuser, who inserted
SELECT * FROM sro_log;
TRUNCATE sro_log, sro_counter;
ANALYZE sro_bait;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS written_by_analyze FROM sro_log;

-- 1b. Buffered rows are written as the user who buffered them: a SECURITY
-- DEFINER function's rows as its owner, whoever commits.
CREATE FUNCTION sro_definer(k int) RETURNS jsonb LANGUAGE sql SECURITY DEFINER AS
$$SELECT upsert_increment('public.sro_counter', jsonb_build_object('k', k), '{"n": 1}')$$;
ALTER FUNCTION sro_definer(int) OWNER TO regress_uc_owner;
GRANT EXECUTE ON FUNCTION sro_definer(int) TO regress_uc_caller;
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SET LOCAL ROLE regress_uc_caller;
SELECT sro_definer(7);
COMMIT;
SELECT * FROM sro_log;
SELECT * FROM sro_counter;

-- 1c. Buffering checks privileges at the call, before it locks anything.
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SET LOCAL ROLE regress_uc_caller;
SELECT upsert_increment('sro_counter', '{"k": 8}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- column privileges: INSERT on the table is not UPDATE of the delta
GRANT SELECT, INSERT ON sro_counter TO regress_uc_caller;
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SET LOCAL ROLE regress_uc_caller;
SELECT upsert_increment('sro_counter', '{"k": 8}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- a read-only transaction refuses the call itself, not only its COMMIT
BEGIN READ ONLY;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('sro_counter', '{"k": 8}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- 2a. A cursor over the aggregate keeps its cache entries, even when it
-- was fetched in a savepoint that was rolled back, and when another call
-- pins and releases the same entry in between, and the cache is reset.
CREATE TABLE uaf (k int PRIMARY KEY, n int);
SET enable_sort = off;		-- a hashed GROUP BY builds every group's state first
BEGIN;
DECLARE uaf_cursor CURSOR FOR
	SELECT g % 3 AS grp, upsert_increment('uaf', jsonb_build_object('k', g), '{"n": 1}')
	FROM generate_series(1, 9) g GROUP BY g % 3;
SAVEPOINT sp;
FETCH 1 FROM uaf_cursor;
ROLLBACK TO sp;
SELECT upsert_increment('uaf', '{"k": 100}', '{"n": 1}');
SELECT upsert_counter_cache_reset();
FETCH 1 FROM uaf_cursor;
FETCH 1 FROM uaf_cursor;
COMMIT;
RESET enable_sort;
-- the first group's write was rolled back with the savepoint
SELECT count(*), sum(n) FROM uaf;

-- 2b. User code run while converting a value (a domain CHECK) calls
-- upsert_increment() on another table and, with a one-entry cache, used to
-- evict the entry of the call that was converting.
CREATE TABLE uaf_side (k int PRIMARY KEY, n int);
CREATE FUNCTION uaf_side_effect(int) RETURNS boolean LANGUAGE sql AS
$$SELECT upsert_increment('uaf_side', jsonb_build_object('k', $1), '{"n": 1}') IS NOT NULL$$;
CREATE DOMAIN uaf_checked AS int CHECK (uaf_side_effect(VALUE));
CREATE TABLE uaf_main (k uaf_checked PRIMARY KEY, n int);
SET upsert_counter.cache_size = 1;
SELECT upsert_increment('uaf_main', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('uaf_main', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('uaf_main', jsonb_build_object('k', g % 2), '{"n": 1}') FROM generate_series(1, 4) g;
RESET upsert_counter.cache_size;
SELECT * FROM uaf_main ORDER BY k;
SELECT * FROM uaf_side ORDER BY k;

-- 3. upsert_increment_returning() ends when no row can be returned.
-- (a) A BEFORE INSERT trigger that skips the row: with deltas, and as a
-- get-or-create (DO NOTHING) that retries once.
CREATE TABLE loop_skip (k int PRIMARY KEY, n int);
CREATE FUNCTION loop_skip_insert() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RETURN NULL; END$$;
CREATE TRIGGER loop_skip_insert BEFORE INSERT ON loop_skip
	FOR EACH ROW EXECUTE FUNCTION loop_skip_insert();
SELECT * FROM upsert_increment_returning('loop_skip', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM upsert_increment_returning('loop_skip', '{"k": 1}', '{}');
\echo :LAST_ERROR_SQLSTATE
-- upsert_increment() says what happened: nothing
SELECT upsert_increment('loop_skip', '{"k": 1}', '{"n": 1}');
-- (b) A row that row-level security hides from the caller.
CREATE TABLE loop_rls (k int PRIMARY KEY, n int, owner text DEFAULT current_user);
ALTER TABLE loop_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY loop_rls_all ON loop_rls USING (owner = current_user);
GRANT ALL ON loop_rls TO regress_uc_caller;
INSERT INTO loop_rls VALUES (1, 0, 'someone else');
SET ROLE regress_uc_caller;
SELECT * FROM upsert_increment_returning('loop_rls', '{"k": 1}', '{}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- (c) A unique index whose collation is not the column's: the lookup
-- compares as the index does, and finds the row.
CREATE COLLATION loop_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE loop_coll (name text COLLATE "C", n int);
CREATE UNIQUE INDEX loop_coll_name ON loop_coll (name COLLATE loop_ci);
INSERT INTO loop_coll VALUES ('Alice', 1);
SELECT * FROM upsert_increment_returning('loop_coll', '{"name": "alice"}', '{}');
SELECT * FROM upsert_increment_returning('loop_coll', '{"name": "ALICE"}', '{"n": 1}');

-- 4. Domain constraints hold for every value that reaches a domain column:
-- a JSON null into a NOT NULL domain, and deltas merged past a CHECK.
CREATE DOMAIN dom_label AS text NOT NULL;
CREATE DOMAIN dom_small AS int CHECK (VALUE < 10);
CREATE TABLE dom (k int PRIMARY KEY, n dom_small DEFAULT 0, label dom_label DEFAULT 'x');
SELECT upsert_increment('dom', '{"k": 1}', '{"n": 1}', '{"label": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('dom', '{"k": 1}', '{"n": 1}', NULL, '{"label": null}');
\echo :LAST_ERROR_SQLSTATE
-- each delta passes on its own, the merged 15 does not
SELECT upsert_increment('dom', '{"k": 1}', '{"n": 5}') FROM generate_series(1, 3);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('dom', '{"k": 1}', '{"n": 5}');
SELECT upsert_increment('dom', '{"k": 1}', '{"n": 5}');
COMMIT;
\echo :LAST_ERROR_SQLSTATE
-- within the domain, they add up
SELECT upsert_increment('dom', '{"k": 1}', '{"n": 3}') FROM generate_series(1, 3);
SELECT * FROM dom;

-- 5. The statement arbitrates on exactly the index chosen.
-- (a) Two unique indexes on one column, with different collations: the
-- arbiter is the lowest OID ("C"), and the other is a plain constraint
-- that the batch violates, not a second arbiter.
CREATE TABLE arb (name text COLLATE "C", n int);
CREATE UNIQUE INDEX arb_c ON arb (name);
CREATE UNIQUE INDEX arb_ci ON arb (name COLLATE loop_ci);
INSERT INTO arb VALUES ('Alice', 0);
SELECT upsert_increment('arb', jsonb_build_object('name', x), '{"n": 1}')
FROM unnest(ARRAY['alice', 'ALICE']) x;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('arb', '{"name": "Alice"}', '{"n": 1}');
SELECT * FROM arb;
-- (b) A unique index with a deferrable constraint on the same column: the
-- inference list would take both; refused with a way out.
CREATE TABLE arb_def (k int, n int);
CREATE UNIQUE INDEX arb_def_k ON arb_def (k);
ALTER TABLE arb_def ADD CONSTRAINT arb_def_k_later UNIQUE (k) DEFERRABLE;
SELECT upsert_increment('arb_def', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- the way out the hint names
ALTER TABLE arb_def ADD CONSTRAINT arb_def_k_now UNIQUE USING INDEX arb_def_k;
SELECT upsert_increment('arb_def', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('arb_def', '{"k": 1}', '{"n": 1}');
SELECT * FROM arb_def;

-- 6. Rows go to the target OID a call named, under its current name, also
-- when a table of the old name appears before they are written.
CREATE TABLE stale (k int PRIMARY KEY, n int);
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('stale', '{"k": 1}', '{"n": 1}');
ALTER TABLE stale RENAME TO stale_renamed;
CREATE TABLE stale (k int PRIMARY KEY, n int);
COMMIT;
SELECT 'stale' AS tab, * FROM stale UNION ALL SELECT 'stale_renamed', * FROM stale_renamed;
DROP TABLE stale;
-- a column changing type between buffering and writing is an error, not
-- a misread value
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('stale_renamed', '{"k": 1}', '{"n": 1}');
ALTER TABLE stale_renamed ALTER COLUMN n TYPE bigint;
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stale_renamed;

-- 7. A string converted under one DateStyle is not reused under another:
-- 01/02/2026 is 1 February, then 2 January.
CREATE TABLE memo (d date PRIMARY KEY, n int);
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SET LOCAL DateStyle = 'ISO, DMY';
SELECT upsert_increment('memo', '{"d": "01/02/2026"}', '{"n": 1}') FROM generate_series(1, 2);
SET LOCAL DateStyle = 'ISO, MDY';
SELECT upsert_increment('memo', '{"d": "01/02/2026"}', '{"n": 1}') FROM generate_series(1, 2);
COMMIT;
SELECT * FROM memo ORDER BY d;

-- 8. Commit mode in a parallel worker is refused, not silently dropped.
CREATE FUNCTION par_call(k int) RETURNS jsonb LANGUAGE plpgsql PARALLEL SAFE AS
$$BEGIN
	RETURN upsert_increment('memo', jsonb_build_object('d', '2026-03-01'), '{"n": 1}');
END$$;
CREATE TABLE par_src AS SELECT 1 AS k;
ANALYZE par_src;
BEGIN;
SET LOCAL upsert_counter.flush = commit;
-- force_parallel_mode was renamed debug_parallel_query in 16
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', true);
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
\set VERBOSITY terse
SELECT par_call(k) FROM par_src;
\set VERBOSITY default
ROLLBACK;
SELECT count(*) FROM memo WHERE d = '2026-03-01';

-- 9. Commit mode inside an EXCEPTION block loop: one buffer, not one per
-- subtransaction; the count exact.
CREATE TABLE subx (k int PRIMARY KEY, n int);
BEGIN;
SET LOCAL upsert_counter.flush = commit;
DO $$
BEGIN
	FOR i IN 1..5000 LOOP
		BEGIN
			PERFORM upsert_increment('subx', jsonb_build_object('k', i % 3), '{"n": 1}');
		EXCEPTION WHEN others THEN
			RAISE;
		END;
	END LOOP;
END$$;
SELECT count(*) AS buffers FROM pg_backend_memory_contexts WHERE name = 'upsert_counter buffer';
SELECT count(*) < 10 AS few_transaction_contexts
FROM pg_backend_memory_contexts WHERE name = 'CurTransactionContext';
COMMIT;
SELECT * FROM subx ORDER BY k;

-- 10. Counts say what the statement did.
CREATE TABLE cnt (k int PRIMARY KEY, n int);
CREATE FUNCTION cnt_skip() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN IF NEW.k >= 100 THEN RETURN NULL; END IF; RETURN NEW; END$$;
CREATE TRIGGER cnt_skip_update BEFORE UPDATE ON cnt FOR EACH ROW EXECUTE FUNCTION cnt_skip();
CREATE TRIGGER cnt_skip_insert BEFORE INSERT ON cnt FOR EACH ROW EXECUTE FUNCTION cnt_skip();
INSERT INTO cnt VALUES (1, 0);
ALTER TABLE cnt DISABLE TRIGGER cnt_skip_insert;
INSERT INTO cnt VALUES (100, 0);
ALTER TABLE cnt ENABLE TRIGGER cnt_skip_insert;
-- an update skipped by its BEFORE trigger is not an update
SELECT upsert_increment('cnt', '{"k": 100}', '{"n": 1}');
-- an insert skipped by its BEFORE trigger is not an insert
SELECT upsert_increment('cnt', '{"k": 101}', '{"n": 1}');
-- a batch: one update done, one skipped, one insert done, one skipped
SELECT upsert_increment('cnt', jsonb_build_object('k', k), '{"n": 1}')
FROM unnest(ARRAY[1, 100, 2, 101]) k;
SELECT * FROM cnt ORDER BY k;
-- On a partitioned table the update count comes from the SET clause; a
-- nested call that fails and is caught leaves the outer count intact.
CREATE TABLE cnt_p (k int PRIMARY KEY, n int) PARTITION BY RANGE (k);
CREATE TABLE cnt_p1 PARTITION OF cnt_p FOR VALUES FROM (0) TO (1000);
CREATE TABLE cnt_q (k int PRIMARY KEY, n int CHECK (n < 0)) PARTITION BY RANGE (k);
CREATE TABLE cnt_q1 PARTITION OF cnt_q FOR VALUES FROM (0) TO (1000);
CREATE FUNCTION cnt_nested() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN
	BEGIN
		PERFORM upsert_increment('cnt_q', '{"k": 1}', '{"n": 1}');
	EXCEPTION WHEN check_violation THEN
		NULL;
	END;
	RETURN NULL;
END$$;
CREATE TRIGGER cnt_nested AFTER UPDATE ON cnt_p1 FOR EACH ROW EXECUTE FUNCTION cnt_nested();
INSERT INTO cnt_q VALUES (1, -5);
SELECT upsert_increment('cnt_p', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('cnt_p', '{"k": 1}', '{"n": 1}');
SELECT * FROM cnt_p;
-- and an update that a partition's BEFORE trigger skips is no update there
-- either, alone or in a batch with an update and an insert
CREATE TRIGGER cnt_p_skip BEFORE UPDATE ON cnt_p1 FOR EACH ROW EXECUTE FUNCTION cnt_skip();
INSERT INTO cnt_p VALUES (100, 0);
SELECT upsert_increment('cnt_p', '{"k": 100}', '{"n": 1}');
SELECT upsert_increment('cnt_p', jsonb_build_object('k', k), '{"n": 1}')
FROM unnest(ARRAY[1, 100, 5]) k;
SELECT * FROM upsert_increment_returning('cnt_p', '{"k": 6}', '{"n": 1}');
SELECT * FROM upsert_increment_returning('cnt_p', '{"k": 6}', '{"n": 1}');
SELECT * FROM cnt_p ORDER BY k;

-- 11. Composite-typed columns, in a batch and in commit mode.
CREATE TYPE pair AS (a int, b int);
CREATE TABLE comp (k int PRIMARY KEY, n int, p pair);
SELECT upsert_increment('comp', jsonb_build_object('k', g % 2), '{"n": 1}', jsonb_build_object('p', '(' || g || ',0)'))
FROM generate_series(1, 4) g;
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('comp', '{"k": 0}', '{"n": 1}', '{"p": "(9,9)"}');
COMMIT;
SELECT * FROM comp ORDER BY k;

-- 12. If the aggregates lose their volatility (pg_upgrade re-creates them
-- immutable), identical calls in one query are refused, not written once.
CREATE TABLE twin (k int PRIMARY KEY, n int);
UPDATE pg_proc SET provolatile = 'i'
WHERE oid = 'upsert_increment(regclass, jsonb, jsonb)'::regprocedure;
SELECT upsert_increment('twin', '{"k": 1}', '{"n": 1}'), upsert_increment('twin', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- different calls, and a single one, are fine
SELECT upsert_increment('twin', '{"k": 1}', '{"n": 1}'), upsert_increment('twin', '{"k": 1}', '{"n": 2}');
SELECT upsert_increment('twin', '{"k": 1}', '{"n": 1}');
UPDATE pg_proc SET provolatile = 'v'
WHERE oid = 'upsert_increment(regclass, jsonb, jsonb)'::regprocedure;
SELECT * FROM twin;

-- Also: a JSON number out of a smallint's range names smallint.
CREATE TABLE small (k smallint PRIMARY KEY, n int);
SELECT upsert_increment('small', '{"k": 99999999999999999999}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('small', '{"k": 40000}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE

RESET statement_timeout;
DROP TABLE sro_bait, sro_counter, sro_log, uaf, uaf_main, uaf_side, loop_skip, loop_rls,
	loop_coll, dom, arb, arb_def, stale_renamed, memo, par_src, subx, cnt, cnt_p, cnt_q,
	comp, twin, small;
DROP DOMAIN uaf_checked, dom_label, dom_small;
DROP FUNCTION sro_trap(int), sro_log_writer(), sro_definer(int), uaf_side_effect(int),
	loop_skip_insert(), par_call(int), cnt_skip(), cnt_nested();
DROP TYPE pair;
DROP COLLATION loop_ci;
REVOKE CREATE ON SCHEMA public FROM regress_uc_owner;
DROP ROLE regress_uc_owner, regress_uc_caller;
