--
-- flush: upsert_counter.flush = commit buffers the rows of a transaction
-- and writes them, merged and sorted, just before it commits
--
CREATE TABLE fc (k int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, label text);

-- In commit mode a call buffers and says so; reads in the same transaction
-- do not see buffered deltas until they are written.
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('fc', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('fc', jsonb_build_object('k', g % 2), '{"n": 1}') FROM generate_series(1, 4) g;
SELECT count(*) FROM fc;
-- upsert_counter_flush() writes now and returns what it wrote
SELECT upsert_counter_flush();
SELECT * FROM fc ORDER BY k;
SELECT upsert_counter_flush();
SELECT upsert_increment('fc', '{"k": 1}', '{"n": 10}');
COMMIT;
SELECT * FROM fc ORDER BY k;

-- A statement of its own (autocommit) commits at its end, and so writes.
SET upsert_counter.flush = commit;
SELECT upsert_increment('fc', '{"k": 2}', '{"n": 1}');
SELECT * FROM fc WHERE k = 2;
-- zero input rows buffer nothing
SELECT upsert_increment('fc', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 0) g;

-- upsert_increment_returning() always writes at once: it must return the row
BEGIN;
SELECT * FROM upsert_increment_returning('fc', '{"k": 3}', '{"n": 5}');
SELECT * FROM fc WHERE k = 3;
COMMIT;
RESET upsert_counter.flush;

-- Immediate and deferred calls mixed in one transaction add up.
BEGIN;
SELECT upsert_increment('fc', '{"k": 4}', '{"n": 1}');
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('fc', '{"k": 4}', '{"n": 10}', '{"label": "deferred"}');
SET LOCAL upsert_counter.flush = statement;
SELECT upsert_increment('fc', '{"k": 4}', '{"n": 100}', '{"label": "immediate"}');
SELECT n, label FROM fc WHERE k = 4;
COMMIT;
-- the deferred assign was written last, at commit
SELECT n, label FROM fc WHERE k = 4;

-- Savepoints: rows of a rolled-back savepoint are discarded, those of a
-- released one move to the parent.
SET upsert_counter.flush = commit;
BEGIN;
SELECT upsert_increment('fc', '{"k": 5}', '{"n": 1}');
SAVEPOINT a;
SELECT upsert_increment('fc', '{"k": 5}', '{"n": 10}');
SELECT upsert_increment('fc', '{"k": 6}', '{"n": 10}');
ROLLBACK TO a;
SELECT upsert_increment('fc', '{"k": 5}', '{"n": 100}');
SAVEPOINT b;
SELECT upsert_increment('fc', '{"k": 5}', '{"n": 1000}');
SAVEPOINT c;
SELECT upsert_increment('fc', '{"k": 5}', '{"n": 10000}');
RELEASE c;
ROLLBACK TO b;
SAVEPOINT d;
SELECT upsert_increment('fc', '{"k": 5}', '{"n": 100000}');
RELEASE d;
COMMIT;
SELECT * FROM fc WHERE k IN (5, 6) ORDER BY k;

-- A flush inside a savepoint that rolls back is undone, and the rows are
-- pending again: nothing lost, nothing counted twice.
BEGIN;
SELECT upsert_increment('fc', '{"k": 7}', '{"n": 1}');
SAVEPOINT s;
SELECT upsert_counter_flush();
SELECT n FROM fc WHERE k = 7;
ROLLBACK TO s;
SELECT count(*) FROM fc WHERE k = 7;
COMMIT;
SELECT n FROM fc WHERE k = 7;
-- ... and one in a released savepoint is not written again at commit
BEGIN;
SELECT upsert_increment('fc', '{"k": 7}', '{"n": 1}');
SAVEPOINT s;
SELECT upsert_counter_flush();
RELEASE s;
COMMIT;
SELECT n FROM fc WHERE k = 7;

-- Abort discards the buffer; nothing leaks into the next transaction.
BEGIN;
SELECT upsert_increment('fc', '{"k": 8}', '{"n": 1}');
ROLLBACK;
BEGIN;
SELECT upsert_increment('fc', '{"k": 9}', '{"n": 1}');
COMMIT;
SELECT * FROM fc WHERE k IN (8, 9) ORDER BY k;

-- An error while writing at commit aborts the commit, as a deferred
-- constraint would, and leaves no partial counts.
CREATE TABLE fc_capped (k int PRIMARY KEY, n int NOT NULL DEFAULT 0 CHECK (n < 50));
INSERT INTO fc_capped VALUES (1, 0), (2, 0);
BEGIN;
SELECT upsert_increment('fc_capped', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('fc_capped', '{"k": 2}', '{"n": 100}');
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM fc_capped ORDER BY k;
-- the same bad input, flushed by hand, fails there instead
BEGIN;
SELECT upsert_increment('fc_capped', '{"k": 2}', '{"n": 100}');
SELECT upsert_counter_flush();
ROLLBACK;

-- Deferred constraint triggers on the counter table: PostgreSQL fires
-- deferred triggers before the flush, so upsert_counter fires those its
-- writes queue right after it.  A deferred foreign key is checked.
CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent VALUES (1);
CREATE TABLE child_counts (parent_id int PRIMARY KEY
                               REFERENCES parent DEFERRABLE INITIALLY DEFERRED,
                           n int NOT NULL DEFAULT 0);
BEGIN;
SELECT upsert_increment('child_counts', '{"parent_id": 1}', '{"n": 1}');
SELECT upsert_increment('child_counts', '{"parent_id": 2}', '{"n": 1}');
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM child_counts;
BEGIN;
SELECT upsert_increment('child_counts', '{"parent_id": 1}', '{"n": 1}');
SELECT upsert_increment('child_counts', '{"parent_id": 2}', '{"n": 1}');
INSERT INTO parent VALUES (2);
COMMIT;
SELECT * FROM child_counts ORDER BY parent_id;

-- Past upsert_counter.flush_limit distinct keys the buffer is written
-- early, inside the transaction (so its row locks are taken then).
SET upsert_counter.flush_limit = 3;
BEGIN;
SELECT upsert_increment('fc', jsonb_build_object('k', 100 + g), '{"n": 1}') FROM generate_series(1, 5) g;
SELECT count(*) FROM fc WHERE k > 100;
SELECT upsert_increment('fc', '{"k": 101}', '{"n": 1}');
SELECT n FROM fc WHERE k = 101;
COMMIT;
SELECT n FROM fc WHERE k = 101;
RESET upsert_counter.flush_limit;

-- PREPARE TRANSACTION writes the buffer into the prepared transaction.
BEGIN;
SELECT upsert_increment('fc', '{"k": 200}', '{"n": 1}');
PREPARE TRANSACTION 'uc_flush_test';
SELECT count(*) FROM fc WHERE k = 200;
COMMIT PREPARED 'uc_flush_test';
SELECT n FROM fc WHERE k = 200;
RESET upsert_counter.flush;
