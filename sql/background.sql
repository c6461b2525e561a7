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
SELECT target, caller, names, nrole, types FROM upsert_counter_delta ORDER BY id;

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

-- A fold that fails keeps its rows and records why; other targets fold.
SELECT upsert_increment('bg_hits', '{"k": 2}', '{"n": 600}');
SELECT upsert_increment('bg_hits', '{"k": 2}', '{"n": 600}');
SELECT upsert_increment('bg_other', '{"id": 7}', '{"hits": 1}');
SELECT upsert_counter_fold('bg_hits');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_counter_fold('bg_other');
SELECT target, pending FROM upsert_counter_backlog WHERE pending > 0;
-- the DBA widens the check; the rows fold
ALTER TABLE bg_hits DROP CONSTRAINT bg_hits_n_check;
SELECT upsert_counter_fold('bg_hits');
SELECT n FROM bg_hits WHERE k = 2;

-- DDL on the target while rows are pending.
SELECT upsert_increment('bg_hits', '{"k": 3}', '{"n": 1}', '{"label": "ddl"}');
-- a new column: nothing changes
ALTER TABLE bg_hits ADD COLUMN extra int DEFAULT 7;
-- a renamed column: the fold fails and keeps the rows until it is back
ALTER TABLE bg_hits RENAME COLUMN label TO tag;
SELECT upsert_counter_fold('bg_hits');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE bg_hits RENAME COLUMN tag TO label;
-- a changed type: the logged value is converted as through text
ALTER TABLE bg_hits ALTER COLUMN n TYPE numeric;
SELECT upsert_counter_read('bg_hits', '{"k": 3}') ->> 'n' AS n;
SELECT upsert_counter_fold('bg_hits');
SELECT k, n, label, extra FROM bg_hits WHERE k = 3;
-- a dropped target: its rows stay, reported, until discarded
CREATE TABLE bg_gone (k int PRIMARY KEY, n int);
SELECT upsert_increment('bg_gone', '{"k": 1}', '{"n": 1}');
SELECT 'bg_gone'::regclass::oid AS gone_oid \gset
DROP TABLE bg_gone;
\set VERBOSITY sqlstate
SELECT upsert_counter_fold(:gone_oid);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT pending FROM upsert_counter_backlog WHERE target = :gone_oid;
SELECT upsert_counter_discard(:gone_oid);
SELECT count(*) FROM upsert_counter_backlog WHERE target = :gone_oid AND pending > 0;

-- Privileges: the caller needs what the statement needs, at the call; the
-- fold writes as the caller (a trigger sees who); the log is no one's to
-- write or read but the extension owner's.
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
INSERT INTO upsert_counter_delta (target, caller, names, nrole, types, vals)
VALUES ('bg_hits', 'postgres', '{k,n}', '{1,1,0,0}', '{int4,int8}', '{"\\x00000009","\\x00000000000003e8"}');
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
DROP TABLE bg_hits, bg_other, bg_who;
DROP FUNCTION bg_who_fn();
DROP ROLE regress_uc_bg, regress_uc_bg_none;
TRUNCATE upsert_counter_fold_status;
