--
-- statement: a call does what the plain INSERT ... ON CONFLICT statement
-- does, case by case (safety round 3).  Each case runs the plain statement
-- and the call side by side on the same table and shows both outcomes.
-- Until 1.2 an existing row could be updated without the executor; these
-- are the cases where that differed from the statement (a call after the
-- first on a shape, with its plan cached, could take that path, hence the
-- repeated calls below).  Since 1.3 every call runs the statement, so
-- every pair below must agree.
-- tests/differential.py compares the two on generated tables.
--
\set SHOW_CONTEXT never

-- 1. A read-only transaction refuses the write, on the update path too.
CREATE TABLE s_ro (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO s_ro VALUES (1, 0);
SELECT upsert_increment('s_ro', '{"k": 1}', '{"n": 1}');
BEGIN READ ONLY;
INSERT INTO s_ro AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT upsert_increment('s_ro', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET default_transaction_read_only = on;
SELECT upsert_increment('s_ro', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_ro', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 2) g;
\echo :LAST_ERROR_SQLSTATE
RESET default_transaction_read_only;
SELECT n FROM s_ro;

-- 2. A partition targeted directly: a new value outside the partition's
-- bounds is refused (ON CONFLICT DO UPDATE cannot move a row), never
-- written into the wrong partition.
CREATE TABLE s_part (k int NOT NULL, n int NOT NULL) PARTITION BY RANGE (n);
CREATE TABLE s_part_low PARTITION OF s_part FOR VALUES FROM (0) TO (10);
CREATE TABLE s_part_high PARTITION OF s_part FOR VALUES FROM (10) TO (100);
CREATE UNIQUE INDEX ON s_part_low (k);
SELECT upsert_increment('s_part_low', '{"k": 1}', '{"n": 5}');
SELECT upsert_increment('s_part_low', '{"k": 1}', '{"n": 1}');
INSERT INTO s_part_low AS t (k, n) VALUES (1, 8) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_part_low', '{"k": 1}', '{"n": 8}');
\echo :LAST_ERROR_SQLSTATE
SELECT tableoid::regclass, k, n FROM s_part;

-- 3. Replica identity: a table that publishes updates needs one.
CREATE TABLE s_pub (k int NOT NULL, n int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX s_pub_k ON s_pub (k);
INSERT INTO s_pub VALUES (1, 0);
SET client_min_messages = error;	-- no warning about wal_level
CREATE PUBLICATION s_pub_all FOR TABLE s_pub;
RESET client_min_messages;
INSERT INTO s_pub AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_pub', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_pub', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- even a new key: the statement may update, so it is checked at its start
INSERT INTO s_pub AS t (k, n) VALUES (2, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_pub', '{"k": 2}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- a get-or-create call (DO NOTHING) never updates: it needs none
SELECT upsert_increment('s_pub', '{"k": 2}', '{}');
-- with a replica identity both update
ALTER TABLE s_pub REPLICA IDENTITY USING INDEX s_pub_k;
SELECT upsert_increment('s_pub', '{"k": 1}', '{"n": 1}');
-- a row filter on a column outside the replica identity
ALTER PUBLICATION s_pub_all SET TABLE s_pub WHERE (n > 0);
INSERT INTO s_pub AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_pub', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM s_pub ORDER BY k;
DROP PUBLICATION s_pub_all;

-- 4. Defaults are the current ones: a SQL function in a default replaced
-- after the first call is evaluated anew, for the proposed row, checks
-- and all.
CREATE FUNCTION s_default() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE SEQUENCE s_seq;
CREATE TABLE s_def (k int PRIMARY KEY, n int NOT NULL DEFAULT 0,
                    d int DEFAULT s_default() CHECK (d < 5));
SELECT upsert_increment('s_def', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('s_def', '{"k": 1}', '{"n": 1}');
CREATE OR REPLACE FUNCTION s_default() RETURNS int LANGUAGE sql AS 'SELECT 10';
INSERT INTO s_def AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_def', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- now it calls nextval(): the sequence advances on every call, as it does
-- for the statement (the proposed row is built before the conflict)
CREATE OR REPLACE FUNCTION s_default() RETURNS int LANGUAGE sql AS $$SELECT (nextval('s_seq') % 2)::int$$;
INSERT INTO s_def AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
SELECT upsert_increment('s_def', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('s_def', '{"k": 1}', '{"n": 1}');
SELECT last_value FROM s_seq;
SELECT * FROM s_def;

-- 5. A MATCH FULL foreign key that is partly NULL under NOT VALID: updating
-- the row fires the check, which fails.
CREATE TABLE s_parent (a int, b int, UNIQUE (a, b));
CREATE TABLE s_child (k int PRIMARY KEY, n int NOT NULL DEFAULT 0, a int, b int);
INSERT INTO s_child VALUES (1, 0, 1, NULL);
ALTER TABLE s_child ADD FOREIGN KEY (a, b) REFERENCES s_parent (a, b) MATCH FULL NOT VALID;
INSERT INTO s_child AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_child', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_child', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM s_child;

-- 6. tableoid is the table's in checks.
CREATE TABLE s_oid (k int PRIMARY KEY, n int NOT NULL DEFAULT 0,
                    CHECK (tableoid = 's_oid'::regclass));
INSERT INTO s_oid AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
INSERT INTO s_oid AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
SELECT upsert_increment('s_oid', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('s_oid', '{"k": 1}', '{"n": 1}');
SELECT * FROM s_oid;

-- 7. The privileges of the plain statement are enough: column privileges
-- on exactly the columns it names, no table-wide SELECT.
CREATE TABLE s_acl (k int PRIMARY KEY, n int NOT NULL DEFAULT 0, secret text);
CREATE ROLE regress_uc_columns;
GRANT INSERT (k, n), UPDATE (n), SELECT (k, n) ON s_acl TO regress_uc_columns;
SET ROLE regress_uc_columns;
INSERT INTO s_acl AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
SELECT upsert_increment('s_acl', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('s_acl', '{"k": 2}', '{"n": 1}');
SELECT upsert_increment('s_acl', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 3) g;
SELECT * FROM upsert_increment_returning('s_acl', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment_rows('s_acl', r, '{n}') FROM (SELECT 3 AS k, 5 AS n) r;
SELECT k, n FROM s_acl ORDER BY k;
RESET ROLE;
-- (returning returns the whole row, so it needs SELECT on all of it, as
-- RETURNING t.* does)
GRANT SELECT (secret) ON s_acl TO regress_uc_columns;
SET ROLE regress_uc_columns;
SELECT * FROM upsert_increment_returning('s_acl', '{"k": 1}', '{"n": 1}');
RESET ROLE;

-- 8. Typed batches apply the column's typmod to each value before merging,
-- as the jsonb form and the statement do: 1.005 is 1.01 in numeric(6, 2),
-- twice 2.02 (not 2.010 rounded to 2.01); keys 1.001 and 1.004 are both
-- 1.00, one key (not "cannot affect row a second time").
CREATE TABLE s_tm (k numeric(6, 2) PRIMARY KEY, n numeric(6, 2) NOT NULL DEFAULT 0,
                   label varchar(3));
SELECT upsert_increment_rows('s_tm', r, '{n}')
FROM (VALUES (1.001, 1.005), (1.004, 1.005), (2.001, 0)) r(k, n);
SELECT upsert_increment('s_tm', jsonb_build_object('k', k), jsonb_build_object('n', n))
FROM (VALUES (11.001, 1.005), (11.004, 1.005), (12.001, 0)) r(k, n);
INSERT INTO s_tm AS t (k, n) VALUES (21.001, 1.005) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
INSERT INTO s_tm AS t (k, n) VALUES (21.004, 1.005) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
INSERT INTO s_tm AS t (k, n) VALUES (22.001, 0) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
SELECT * FROM s_tm ORDER BY k;
-- a value too long for varchar(3) is the statement's error
SELECT upsert_increment_rows('s_tm', r, '{n}', '{label}') FROM (SELECT 1.00 AS k, 0 AS n, 'long'::varchar AS label) r;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO s_tm (k, n, label) VALUES (1.00, 0, 'long'::varchar) ON CONFLICT (k) DO UPDATE SET label = EXCLUDED.label;
\echo :LAST_ERROR_SQLSTATE

-- 9. The proposed row is checked before the conflict is looked for (see
-- specs/checks_before_locks.spec for the waiting side of it).
CREATE TABLE s_chk (k int PRIMARY KEY, n int NOT NULL DEFAULT 0 CHECK (n >= 0));
INSERT INTO s_chk VALUES (1, 5);
INSERT INTO s_chk AS t (k, n) VALUES (1, -1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_chk', '{"k": 1}', '{"n": -1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM s_chk;

-- 11. REVOKE EXECUTE on the aggregate refuses the FROM-less call too (it
-- is planned as a function call) and every other form.
CREATE TABLE s_exec (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
GRANT INSERT, UPDATE, SELECT ON s_exec TO regress_uc_columns;
REVOKE EXECUTE ON FUNCTION upsert_increment(regclass, jsonb, jsonb) FROM PUBLIC;
SET ROLE regress_uc_columns;
SELECT upsert_increment('s_exec', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_exec', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 2) g;
\echo :LAST_ERROR_SQLSTATE
PREPARE s_exec_call AS SELECT upsert_increment('s_exec', '{"k": 1}', '{"n": 1}');
EXECUTE s_exec_call;
\echo :LAST_ERROR_SQLSTATE
-- the other arities are still granted
SELECT upsert_increment('s_exec', '{"k": 1}', '{"n": 1}', '{}');
RESET ROLE;
-- a plan made by a user who may is refused to one who may not
PREPARE s_exec_owner AS SELECT upsert_increment('s_exec', '{"k": 1}', '{"n": 1}');
EXECUTE s_exec_owner;
SET ROLE regress_uc_columns;
EXECUTE s_exec_owner;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION upsert_increment(regclass, jsonb, jsonb) TO PUBLIC;
SET ROLE regress_uc_columns;
EXECUTE s_exec_call;
RESET ROLE;
SELECT * FROM s_exec;
-- the planned form's called_as must be one of the aggregates
SELECT upsert_increment_call('s_exec', '{"k": 1}', '{"n": 1}', NULL, NULL,
                             'upsert_increment_call(regclass, jsonb, jsonb, jsonb, jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment_call('s_exec', '{"k": 1}', '{"n": 1}', NULL, NULL,
                             'upsert_increment(regclass, jsonb, jsonb)');
DEALLOCATE s_exec_call;
DEALLOCATE s_exec_owner;

-- upsert_counter.fast_update is accepted and has no effect.
SET upsert_counter.fast_update = on;
SELECT upsert_increment('s_exec', '{"k": 1}', '{"n": 1}');
RESET upsert_counter.fast_update;

-- 12. ON CONFLICT reads the arbiter's columns, whatever its action: with
-- no SELECT on a key column the statement is refused, and so is the call,
-- in commit mode at the call (not at commit).
CREATE TABLE s_keysel (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
GRANT INSERT (k, n), UPDATE (n), SELECT (n) ON s_keysel TO regress_uc_columns;
SET ROLE regress_uc_columns;
INSERT INTO s_keysel AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO s_keysel (k) VALUES (1) ON CONFLICT (k) DO NOTHING;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_keysel', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_keysel', '{"k": 1}', '{}');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('s_keysel', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
GRANT SELECT (k) ON s_keysel TO regress_uc_columns;
SET ROLE regress_uc_columns;
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('s_keysel', '{"k": 1}', '{"n": 1}');
COMMIT;
RESET ROLE;
SELECT * FROM s_keysel;
-- the same for an assigned column: SET label = EXCLUDED.label reads it
ALTER TABLE s_keysel ADD COLUMN label text;
GRANT INSERT (label), UPDATE (label) ON s_keysel TO regress_uc_columns;
SET ROLE regress_uc_columns;
INSERT INTO s_keysel AS t (k, label) VALUES (1, 'a') ON CONFLICT (k) DO UPDATE SET label = EXCLUDED.label;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('s_keysel', '{"k": 1}', '{}', '{"label": "a"}');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('s_keysel', '{"k": 1}', '{}', '{"label": "a"}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

-- 13. A trigger that rolls back a subtransaction of its own (an EXCEPTION
-- block) between the row's SET clause and its RETURNING leaves the row
-- counted as what it is: updated.
CREATE TABLE s_sub (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
CREATE FUNCTION s_sub_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM 1 / 0;
    EXCEPTION WHEN division_by_zero THEN
        NULL;
    END;
    RETURN NEW;
END $$;
CREATE TRIGGER s_sub BEFORE UPDATE ON s_sub FOR EACH ROW EXECUTE FUNCTION s_sub_fn();
SELECT upsert_increment('s_sub', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('s_sub', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('s_sub', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 2) g;
SELECT inserted, new_row ->> 'n' AS n FROM upsert_increment_returning('s_sub', '{"k": 1}', '{"n": 1}');
SELECT * FROM s_sub ORDER BY k;

-- 14. Typed batches of arrays of a type with a typmod: the typmod applies
-- to each element before rows are merged, as the statement's assignment
-- applies it: keys {1.004} and {1.001} are both {1.00}, one key, whose
-- later label wins (not two keys written in key order, the earlier label
-- last).
CREATE TABLE s_arr (k numeric(6, 2)[] PRIMARY KEY, n int NOT NULL DEFAULT 0,
                    label varchar(3)[]);
SELECT upsert_increment_rows('s_arr', r, '{n}', '{label}')
FROM (VALUES (ARRAY[1.004], 1, ARRAY['a']::varchar[]), (ARRAY[1.001], 1, ARRAY['b']::varchar[])) r(k, n, label);
INSERT INTO s_arr AS t (k, n, label) VALUES (ARRAY[11.004], 1, ARRAY['a']::varchar[])
ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n, label = EXCLUDED.label;
INSERT INTO s_arr AS t (k, n, label) VALUES (ARRAY[11.001], 1, ARRAY['b']::varchar[])
ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n, label = EXCLUDED.label;
SELECT * FROM s_arr ORDER BY k;
SELECT upsert_increment_rows('s_arr', r, '{n}', '{label}')
FROM (SELECT ARRAY[1.00] AS k, 1 AS n, ARRAY['ab', 'long']::varchar[] AS label) r;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO s_arr AS t (k, n, label) VALUES (ARRAY[1.00], 1, ARRAY['ab', 'long']::varchar[])
ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n, label = EXCLUDED.label;
\echo :LAST_ERROR_SQLSTATE

DROP TABLE s_ro, s_part, s_pub, s_def, s_parent, s_child, s_oid, s_acl, s_tm, s_chk, s_exec,
    s_keysel, s_sub, s_arr;
DROP FUNCTION s_sub_fn();
DROP FUNCTION s_default();
DROP SEQUENCE s_seq;
DROP ROLE regress_uc_columns;
