--
-- background: upsert_counter.flush = background (1.3).  A call logs its
-- row; a fold writes the merged rows later.  Here no worker is started
-- (upsert_counter.fold_worker = off) and the folds are explicit, so that
-- every step is seen; specs/background_*.spec and tests/stress.py run the
-- worker.
--
SET upsert_counter.fold_worker = off;
CREATE TABLE bg_hits (k int PRIMARY KEY, n bigint NOT NULL DEFAULT 0 CHECK (n < 1000),
                      label text, first text, at timestamptz);
CREATE TABLE bg_other (id int PRIMARY KEY, hits int NOT NULL DEFAULT 0);

-- The call logs a row instead of writing; its result says so.
SET upsert_counter.flush = background;
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"n": 2}', '{"label": "a"}', '{"first": "one"}');
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"n": 3}', '{"label": "b"}', '{"first": "two"}');
-- the aggregate merges its rows first and logs one row per key
SELECT upsert_increment('bg_hits', jsonb_build_object('k', g % 3), '{"n": 1}') FROM generate_series(1, 9) g;
SELECT upsert_increment_rows('bg_other', r, '{hits}') FROM (SELECT g % 2 AS id, 1 AS hits FROM generate_series(1, 4) g) r;
SELECT count(*) AS table_rows FROM bg_hits;
SELECT target, pending, oldest_age IS NOT NULL AS has_age FROM upsert_counter_backlog ORDER BY target::text;
-- what is logged: names role by role, types, values in binary form
SELECT target, caller::regrole, caller_name, names, nrole, types FROM upsert_counter_delta ORDER BY id;

-- Exact reads include what is pending.
SELECT upsert_counter_read('bg_hits', '{"k": 1}');
SELECT upsert_counter_read('bg_hits', '{"k": 2}');
SELECT upsert_counter_read('bg_hits', '{"k": 99}');
SELECT upsert_counter_read('bg_other', '{"id": 0}');

-- The fold: in log order, runs of one shape merged per key (later assign
-- wins, the first on_insert): k 1 was created by a call without "first".
SELECT upsert_counter_fold('bg_hits');
SELECT k, n, label, first FROM bg_hits ORDER BY k;
SELECT upsert_counter_read('bg_hits', '{"k": 1}');
-- a key created by a call that names "first" keeps the first one
SELECT upsert_increment('bg_hits', '{"k": 4}', '{"n": 1}', NULL, '{"first": "x"}');
SELECT upsert_increment('bg_hits', '{"k": 4}', '{"n": 1}', NULL, '{"first": "y"}');
SELECT upsert_counter_read('bg_hits', '{"k": 4}');
SELECT upsert_counter_fold();
SELECT * FROM bg_other ORDER BY id;
SELECT k, n, first FROM bg_hits WHERE k = 4;
SELECT target, pending, folded, last_error FROM upsert_counter_backlog ORDER BY target::text;

-- Rolled-back rows are never folded: a transaction, a savepoint.
BEGIN;
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"n": 100}');
ROLLBACK;
BEGIN;
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"n": 10}');
SAVEPOINT s;
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"n": 200}');
ROLLBACK TO SAVEPOINT s;
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"n": 20}');
COMMIT;
SELECT upsert_counter_fold('bg_hits');
SELECT n FROM bg_hits WHERE k = 1;

-- The mode can change inside a transaction, per call.
BEGIN;
SET LOCAL upsert_counter.flush = statement;
SELECT upsert_increment('bg_hits', '{"k": 5}', '{"n": 1}');
SET LOCAL upsert_counter.flush = background;
SELECT upsert_increment('bg_hits', '{"k": 5}', '{"n": 1}');
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('bg_hits', '{"k": 5}', '{"n": 1}');
COMMIT;
SELECT n AS written, upsert_counter_read('bg_hits', '{"k": 5}') ->> 'n' AS with_pending
FROM bg_hits WHERE k = 5;
-- returning writes at once, whatever the mode (pending rows are not in it)
SELECT inserted, new_row ->> 'n' AS n FROM upsert_increment_returning('bg_hits', '{"k": 5}', '{"n": 1}');
SELECT upsert_counter_fold('bg_hits');
SELECT n FROM bg_hits WHERE k = 5;

-- Argument errors are the call's, at the call: nothing is logged.
SELECT upsert_increment('bg_hits', '{"k": "x"}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"nope": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('bg_hits', '{"k": null}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS logged FROM upsert_counter_delta;

-- Values are converted under the caller's settings, and folded as
-- converted, whatever the fold's settings.
SET TimeZone = 'Asia/Tokyo';
SET DateStyle = 'SQL, DMY';
SELECT upsert_increment('bg_hits', '{"k": 6}', '{}', '{"at": "22/11/2026 09:00"}');
RESET DateStyle;
SET TimeZone = 'UTC';
SELECT upsert_counter_fold('bg_hits');
SELECT at FROM bg_hits WHERE k = 6;
RESET TimeZone;

-- A read-only transaction logs nothing, as it writes nothing.
BEGIN READ ONLY;
SELECT upsert_increment('bg_hits', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- A key whose rows fail keeps them, and its error is recorded; the
-- target's other keys and other targets fold.
SELECT upsert_increment('bg_hits', '{"k": 2}', '{"n": 600}');
SELECT upsert_increment('bg_hits', '{"k": 2}', '{"n": 600}');
SELECT upsert_increment('bg_hits', '{"k": 10}', '{"n": 1}');
SELECT upsert_increment('bg_other', '{"id": 7}', '{"hits": 1}');
SELECT upsert_counter_fold('bg_hits');
SELECT k, n FROM bg_hits WHERE k IN (2, 10) ORDER BY k;
SELECT upsert_counter_fold('bg_other');
SELECT target, pending, last_sqlstate, last_error, failures FROM upsert_counter_backlog WHERE pending > 0;
-- the DBA widens the check; the rows fold
ALTER TABLE bg_hits DROP CONSTRAINT bg_hits_n_check;
SELECT upsert_counter_fold('bg_hits');
SELECT n FROM bg_hits WHERE k = 2;
SELECT target, pending, last_sqlstate, failures FROM upsert_counter_backlog WHERE target = 'bg_hits'::regclass;

-- DDL on the target while rows are pending.
SELECT upsert_increment('bg_hits', '{"k": 3}', '{"n": 1}', '{"label": "ddl"}');
-- a new column: nothing changes
ALTER TABLE bg_hits ADD COLUMN extra int DEFAULT 7;
-- a renamed column: the fold withholds the rows until it is back
ALTER TABLE bg_hits RENAME COLUMN label TO tag;
SELECT upsert_counter_fold('bg_hits');
SELECT pending, last_sqlstate FROM upsert_counter_backlog WHERE target = 'bg_hits'::regclass;
ALTER TABLE bg_hits RENAME COLUMN tag TO label;
-- a changed type: the logged value is converted as through text
ALTER TABLE bg_hits ALTER COLUMN n TYPE numeric;
SELECT upsert_counter_read('bg_hits', '{"k": 3}') ->> 'n' AS n;
SELECT upsert_counter_fold('bg_hits');
SELECT k, n, label, extra FROM bg_hits WHERE k = 3;
-- a table with pending rows cannot be dropped (they could never be folded),
-- also not with its schema; discarded, it can
CREATE SCHEMA bg_s;
CREATE TABLE bg_s.bg_gone (k int PRIMARY KEY, n int);
SELECT upsert_increment('bg_s.bg_gone', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('bg_s.bg_gone', '{"k": 2}', '{"n": 1}');
DROP TABLE bg_s.bg_gone;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA bg_s CASCADE;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_counter_discard('bg_s.bg_gone');
DROP SCHEMA bg_s CASCADE;
-- rows for a target that is gone all the same (dropped with event triggers
-- off): the fold says so; the log's owner discards them
INSERT INTO upsert_counter_delta (target, caller, caller_name, names, nrole, types, vals)
VALUES (4000000000::oid, 10, 'postgres', '{k,n}', '{1,1,0,0}', '{int4,int4}', '{"\\x00000001","\\x00000001"}');
\set VERBOSITY sqlstate
SELECT upsert_counter_fold(4000000000::oid);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT pending FROM upsert_counter_backlog WHERE target = 4000000000::oid;
SELECT upsert_counter_discard(4000000000::oid);
SELECT count(*) FROM upsert_counter_backlog WHERE target = 4000000000::oid AND pending > 0;

-- Privileges: the caller needs what the statement needs, at the call; the
-- fold writes as the caller (a trigger sees who); the log is no one's to
-- write but the extension owner's, and no one's to read but its and the
-- database owner's.
CREATE ROLE regress_uc_bg;
CREATE ROLE regress_uc_bg_none;
GRANT INSERT (k, n), UPDATE (n), SELECT (k, n) ON bg_hits TO regress_uc_bg;
CREATE TABLE bg_who (who text, k int);
CREATE FUNCTION bg_who_fn() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN INSERT INTO public.bg_who VALUES (current_user, NEW.k); RETURN NEW; END$$;
CREATE TRIGGER bg_who AFTER INSERT OR UPDATE ON bg_hits FOR EACH ROW EXECUTE FUNCTION bg_who_fn();
GRANT INSERT ON bg_who TO regress_uc_bg;
SET ROLE regress_uc_bg;
SELECT upsert_increment('bg_hits', '{"k": 8}', '{"n": 1}');
-- no UPDATE on label: refused at the call, as the statement would be
SELECT upsert_increment('bg_hits', '{"k": 8}', '{"n": 1}', '{"label": "x"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO upsert_counter_delta (target, caller, caller_name, names, nrole, types, vals)
VALUES ('bg_hits', 10, 'postgres', '{k,n}', '{1,1,0,0}', '{int4,int8}', '{"\\x00000009","\\x00000000000003e8"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM upsert_counter_delta;
\echo :LAST_ERROR_SQLSTATE
-- its own pending row shows in the backlog; it may fold
SELECT target, pending FROM upsert_counter_backlog WHERE pending > 0;
SELECT upsert_counter_fold('bg_hits');
SET ROLE regress_uc_bg_none;
SELECT upsert_increment('bg_hits', '{"k": 8}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_counter_fold('bg_hits');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_counter_discard('bg_hits');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS visible FROM upsert_counter_backlog;
RESET ROLE;
SELECT who, k FROM bg_who ORDER BY k, who;
SELECT n FROM bg_hits WHERE k = 8;
-- ON CONFLICT reads the key columns: without SELECT on them, refused at
-- the call
CREATE ROLE regress_uc_bg_nokey;
GRANT INSERT (k, n), UPDATE (n), SELECT (n) ON bg_hits TO regress_uc_bg_nokey;
SET ROLE regress_uc_bg_nokey;
SELECT upsert_increment('bg_hits', '{"k": 8}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Rows are folded in log order per key, across users: a key whose row
-- fails is withheld with every later row of it, whoever logged them, so
-- that a later assignment is never overtaken by an earlier one; other
-- keys fold.  The error shows only to who may read the whole table.
GRANT INSERT (label), UPDATE (label), SELECT (label) ON bg_hits TO regress_uc_bg;
ALTER TABLE bg_hits ADD CONSTRAINT bg_hits_n_check CHECK (n < 1000) NOT VALID;
SELECT upsert_increment('bg_hits', '{"k": 11}', '{"n": 1200}', '{"label": "a"}');
SET ROLE regress_uc_bg;
SELECT upsert_increment('bg_hits', '{"k": 11}', '{"n": 1}', '{"label": "b"}');
SELECT upsert_increment('bg_hits', '{"k": 12}', '{"n": 1}', '{"label": "c"}');
RESET ROLE;
SELECT upsert_counter_fold('bg_hits');
SELECT k, n, label FROM bg_hits WHERE k IN (11, 12) ORDER BY k;
SET ROLE regress_uc_bg;
SELECT pending, last_sqlstate, last_error IS NULL AS error_hidden FROM upsert_counter_backlog;
RESET ROLE;
SELECT pending, last_sqlstate, last_error IS NULL AS error_hidden FROM upsert_counter_backlog
WHERE target = 'bg_hits'::regclass;
ALTER TABLE bg_hits DROP CONSTRAINT bg_hits_n_check;
SELECT upsert_counter_fold('bg_hits');
SELECT k, n, label FROM bg_hits WHERE k = 11;
SELECT who, k FROM bg_who WHERE k IN (11, 12) ORDER BY k, who;

-- The fold finds a logged row's user by OID while it has the logged name,
-- else by name (a dump restored elsewhere); with neither, the rows wait.
SET ROLE regress_uc_bg;
SELECT upsert_increment('bg_hits', '{"k": 13}', '{"n": 1}');
RESET ROLE;
ALTER ROLE regress_uc_bg RENAME TO regress_uc_bg_renamed;
SELECT upsert_counter_fold('bg_hits');
SELECT pending, last_sqlstate FROM upsert_counter_backlog WHERE target = 'bg_hits'::regclass;
CREATE ROLE regress_uc_bg;
GRANT INSERT (k, n), UPDATE (n), SELECT (k, n) ON bg_hits TO regress_uc_bg;
GRANT INSERT ON bg_who TO regress_uc_bg;
SELECT upsert_counter_fold('bg_hits');
SELECT who, k FROM bg_who WHERE k = 13;

-- What background mode refuses at the call: tables the fold could not
-- write as the call would have.
CREATE TEMP TABLE bg_temp (k int PRIMARY KEY, n int);
SELECT upsert_increment('bg_temp', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE bg_rls (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
ALTER TABLE bg_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY bg_rls_all ON bg_rls USING (true);
GRANT INSERT, UPDATE, SELECT ON bg_rls TO regress_uc_bg;
SET ROLE regress_uc_bg;
SELECT upsert_increment('bg_rls', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('bg_rls', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 2) g;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- (the table's owner is not subject to its policies)
SELECT upsert_increment('bg_rls', '{"k": 1}', '{"n": 1}');
SELECT upsert_counter_fold('bg_rls');

-- Keys equal in other bytes (numeric 1.0 and 1.00): a failed key holds
-- back every later row of its key class, so the later row (another
-- shape: no delta) is not applied before the earlier one.
CREATE TABLE bg_num (k numeric PRIMARY KEY, n int NOT NULL DEFAULT 0 CHECK (n < 10), s text);
SELECT upsert_increment('bg_num', '{"k": 1.0}', '{"n": 50}', '{"s": "first"}');
SELECT upsert_increment('bg_num', '{"k": 1.00}', '{}', '{"s": "second"}');
SELECT upsert_counter_fold('bg_num');
SELECT count(*) AS rows_written FROM bg_num;
ALTER TABLE bg_num DROP CONSTRAINT bg_num_n_check;
SELECT upsert_counter_fold('bg_num');
SELECT k, n, s FROM bg_num;

-- A value whose column changed type since it was logged is converted the
-- same way whatever the folding session's settings.
CREATE TABLE bg_conv (k int PRIMARY KEY, x float8);
SELECT upsert_increment('bg_conv', '{"k": 1}', '{}', '{"x": 1234.5678}');
ALTER TABLE bg_conv ALTER COLUMN x TYPE numeric;
SET extra_float_digits = -15;
SELECT upsert_counter_fold('bg_conv');
RESET extra_float_digits;
SELECT k, x FROM bg_conv;

-- A deferred constraint: upsert_counter_fold() makes constraints
-- immediate (its writes cannot queue deferred triggers), so a violation
-- withholds its key at the write.
CREATE TABLE bg_parent (id int PRIMARY KEY);
INSERT INTO bg_parent VALUES (1);
CREATE TABLE bg_deferred (k int PRIMARY KEY REFERENCES bg_parent DEFERRABLE INITIALLY DEFERRED,
                          n int NOT NULL DEFAULT 0);
SELECT upsert_increment('bg_deferred', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('bg_deferred', '{"k": 2}', '{"n": 1}');
SELECT upsert_counter_fold('bg_deferred');
SELECT * FROM bg_deferred;
SELECT pending, last_sqlstate FROM upsert_counter_backlog WHERE target = 'bg_deferred'::regclass;
INSERT INTO bg_parent VALUES (2);
SELECT upsert_counter_fold('bg_deferred');

-- A cancel or statement timeout stops the fold, as it stops a statement:
-- nothing of it stays.
CREATE TABLE bg_slow (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
CREATE FUNCTION bg_slow_fn() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END$$;
CREATE TRIGGER bg_slow BEFORE INSERT ON bg_slow FOR EACH ROW EXECUTE FUNCTION bg_slow_fn();
SELECT upsert_increment('bg_slow', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 4) g;
SET statement_timeout = '500ms';
SELECT upsert_counter_fold('bg_slow');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
SELECT count(*) AS rows_written, (SELECT pending FROM upsert_counter_backlog
                                  WHERE target = 'bg_slow'::regclass) AS pending
FROM bg_slow;
DROP TRIGGER bg_slow ON bg_slow;
SELECT upsert_counter_fold('bg_slow');

-- Not from a security-restricted operation (an index expression).
CREATE FUNCTION bg_fold_in_index(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS
$$BEGIN PERFORM public.upsert_counter_fold(); RETURN $1; END$$;  -- (17 runs index builds with search_path pg_catalog, pg_temp)
CREATE TABLE bg_idx (a int);
INSERT INTO bg_idx VALUES (1);
CREATE INDEX ON bg_idx (bg_fold_in_index(a));
\echo :LAST_ERROR_SQLSTATE

-- The WARNING quotes the failing row only to who may read the table.
CREATE TABLE bg_secret (k int PRIMARY KEY, n int NOT NULL DEFAULT 0 CHECK (n < 10), secret text);
INSERT INTO bg_secret VALUES (1, 5, 'hunter2');
GRANT INSERT (k, n), UPDATE (n), SELECT (k, n) ON bg_secret TO regress_uc_bg;
SET ROLE regress_uc_bg;
SELECT upsert_increment('bg_secret', '{"k": 1}', '{"n": 50}');
SELECT upsert_counter_fold('bg_secret');
RESET ROLE;
SELECT upsert_counter_fold('bg_secret');
SELECT upsert_counter_discard('bg_secret');

-- Commit mode and background mode do not mix their rows.
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('bg_hits', '{"k": 9}', '{"n": 1}');
SET LOCAL upsert_counter.flush = background;
SELECT upsert_increment('bg_hits', '{"k": 9}', '{"n": 10}');
SELECT upsert_counter_flush();
COMMIT;
SELECT n AS written, upsert_counter_read('bg_hits', '{"k": 9}') ->> 'n' AS with_pending
FROM bg_hits WHERE k = 9;
SELECT upsert_counter_fold();

RESET upsert_counter.flush;
RESET upsert_counter.fold_worker;
DROP TABLE bg_hits, bg_other, bg_who, bg_temp, bg_rls, bg_num, bg_conv, bg_deferred, bg_parent,
    bg_slow, bg_idx, bg_secret;
DROP FUNCTION bg_who_fn(), bg_slow_fn(), bg_fold_in_index(int);
DROP ROLE regress_uc_bg, regress_uc_bg_renamed, regress_uc_bg_none, regress_uc_bg_nokey;
TRUNCATE upsert_counter_fold_status;
