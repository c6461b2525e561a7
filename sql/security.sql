--
-- security: the caller's privileges and row-level security apply, on both
-- the insert and the update path, whatever is cached
--
CREATE ROLE regress_uc_writer;
CREATE ROLE regress_uc_reader;
CREATE TABLE acl (k int PRIMARY KEY, n int DEFAULT 0, m int DEFAULT 0);
GRANT SELECT, INSERT ON acl TO regress_uc_writer;
GRANT UPDATE (n) ON acl TO regress_uc_writer;
GRANT SELECT ON acl TO regress_uc_reader;

-- The owner's call caches the plan; it grants nobody anything.
SELECT upsert_increment('acl', '{"k": 1}', '{"n": 1, "m": 1}');

SET ROLE regress_uc_writer;
SELECT upsert_increment('acl', '{"k": 1}', '{"n": 1}');
-- no UPDATE privilege on m
SELECT upsert_increment('acl', '{"k": 1}', '{"m": 1}');
\echo :LAST_ERROR_SQLSTATE
-- not even on the insert path: ON CONFLICT DO UPDATE needs it either way
SELECT upsert_increment('acl', '{"k": 2}', '{"m": 1}');
\echo :LAST_ERROR_SQLSTATE
-- the cached plan of the owner's shape is re-checked for this role
SELECT upsert_increment('acl', '{"k": 1}', '{"n": 1, "m": 1}');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_uc_reader;
SELECT upsert_increment('acl', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT * FROM acl ORDER BY k;

-- Row-level security: INSERT's WITH CHECK on the insert path, UPDATE's
-- USING and WITH CHECK on the update path; a failure is an error, never a
-- silent skip.
CREATE TABLE owned (k int PRIMARY KEY, owner text NOT NULL, n int DEFAULT 0);
ALTER TABLE owned ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_sel ON owned FOR SELECT USING (true);
CREATE POLICY p_ins ON owned FOR INSERT WITH CHECK (owner = current_user);
CREATE POLICY p_upd ON owned FOR UPDATE USING (owner = current_user);
GRANT SELECT, INSERT, UPDATE ON owned TO regress_uc_writer, regress_uc_reader;
INSERT INTO owned VALUES (1, 'regress_uc_reader', 0);

SET ROLE regress_uc_writer;
-- insert path, own row: allowed
SELECT upsert_increment('owned', '{"k": 2}', '{"n": 1}', NULL, '{"owner": "regress_uc_writer"}');
-- update path, own row: allowed
SELECT upsert_increment('owned', '{"k": 2}', '{"n": 1}', NULL, '{"owner": "regress_uc_writer"}');
-- insert path, someone else's row: WITH CHECK fails
SELECT upsert_increment('owned', '{"k": 3}', '{"n": 1}', NULL, '{"owner": "regress_uc_reader"}');
\echo :LAST_ERROR_SQLSTATE
-- update path, someone else's row: USING fails
SELECT upsert_increment('owned', '{"k": 1}', '{"n": 1}', NULL, '{"owner": "regress_uc_writer"}');
\echo :LAST_ERROR_SQLSTATE
-- the same in a batch
SELECT upsert_increment('owned', jsonb_build_object('k', g), '{"n": 1}', NULL, '{"owner": "regress_uc_writer"}')
FROM generate_series(1, 2) g;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT * FROM owned ORDER BY k;

DROP TABLE acl, owned;
DROP ROLE regress_uc_writer, regress_uc_reader;
