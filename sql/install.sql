--
-- install: the extension's objects and their properties
--
-- Install the first released version, then update: the path existing users
-- take.  (A fresh CREATE EXTENSION runs the same scripts.)
CREATE EXTENSION upsert_counter VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'upsert_counter';
SELECT count(*) FROM pg_proc WHERE proname = 'upsert_counter_flush';
ALTER EXTENSION upsert_counter UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'upsert_counter';

-- Every function is caller's rights; those that write are volatile and
-- parallel unsafe; nothing is SECURITY DEFINER.
SELECT p.oid::regprocedure AS function, p.prokind, p.provolatile,
       p.proparallel, p.prosecdef, p.proisstrict
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'upsert_counter'
ORDER BY p.oid::regprocedure::text;

-- The aggregates' final function is declared read-write, so the planner
-- never shares one state between two calls.
SELECT a.aggfnoid::regprocedure AS aggregate, a.aggfinalmodify, a.aggtranstype::regtype
FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
WHERE p.proname = 'upsert_increment'
ORDER BY 1::text;

-- Two identical calls in one query are two writes, not one shared result.
CREATE TABLE twice (k int PRIMARY KEY, n int);
SELECT upsert_increment('twice', '{"k": 1}', '{"n": 1}') AS first,
       upsert_increment('twice', '{"k": 1}', '{"n": 1}') AS second;
SELECT * FROM twice;
DROP TABLE twice;

-- Settings, with their defaults
SELECT upsert_counter_cache_reset();
SHOW upsert_counter.cache_size;
SHOW upsert_counter.batch_size;
SHOW upsert_counter.flush;
SHOW upsert_counter.flush_limit;
SET upsert_counter.flush = 'sometimes';
SET upsert_counter.no_such_setting = 1;
