--
-- errors: every user error has its SQLSTATE, a message, and a detail or
-- hint that says what to do.  Each is followed by its SQLSTATE.
--
CREATE TABLE e (
    id int PRIMARY KEY,
    a int NOT NULL,
    b text NOT NULL,
    c text,
    n int DEFAULT 0,
    g int GENERATED ALWAYS AS (n * 2) STORED,
    ident int GENERATED ALWAYS AS IDENTITY,
    UNIQUE (a, b)
);
CREATE VIEW e_view AS SELECT * FROM e;
CREATE SEQUENCE e_seq;

-- target is not a table (42809)
SELECT upsert_increment('e_view', '{"id": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e_seq', '{"id": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- target does not exist (42P01, from regclass or from our own check)
SELECT upsert_increment('no_such_table', '{"id": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment(4242424242::oid::regclass, '{"id": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE

-- an argument is not a JSON object (22023)
SELECT upsert_increment('e', '[1]', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '1');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '{}', '"x"');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '{}', NULL, 'null');
\echo :LAST_ERROR_SQLSTATE
-- a required argument is NULL (22004)
SELECT upsert_increment('e', NULL, '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment(NULL, '{"id": 1}', '{}');
\echo :LAST_ERROR_SQLSTATE

-- unknown, system and dropped columns (42703)
SELECT upsert_increment('e', '{"id": 1}', '{"nope": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"ID": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '{"n": 1}', '{"xmin": 1}');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE e ADD COLUMN dropped int;
ALTER TABLE e DROP COLUMN dropped;
SELECT upsert_increment('e', '{"id": 1}', '{"dropped": 1}');
\echo :LAST_ERROR_SQLSTATE
-- a name longer than any column name can be never matches, even if its
-- first 63 bytes do
ALTER TABLE e ADD COLUMN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa int;
SELECT upsert_increment('e', '{"id": 1}', jsonb_build_object(repeat('a', 63) || 'b', 1));
\echo :LAST_ERROR_SQLSTATE

-- generated and identity columns (428C9)
SELECT upsert_increment('e', '{"id": 1}', '{}', '{"g": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '{"ident": 1}');
\echo :LAST_ERROR_SQLSTATE

-- a column in two roles (42701)
SELECT upsert_increment('e', '{"id": 1}', '{"n": 1}', '{"n": 2}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '{"id": 1}');
\echo :LAST_ERROR_SQLSTATE

-- keys that match no usable unique index (42P10): the hint lists the usable
-- keys, the detail says why a matching index was refused
SELECT upsert_increment('e', '{"a": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
CREATE UNIQUE INDEX e_c_partial ON e (c) WHERE c IS NOT NULL;
SELECT upsert_increment('e', '{"c": "x"}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
CREATE UNIQUE INDEX e_c_lower ON e (lower(c));
SELECT upsert_increment('e', '{"c": "x"}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE e_def (k int, n int, CONSTRAINT e_def_k UNIQUE (k) DEFERRABLE INITIALLY IMMEDIATE);
SELECT upsert_increment('e_def', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE e_none (k int, n int);
SELECT upsert_increment('e_none', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- an exclusion constraint is not a unique index
CREATE TABLE e_excl (k int, n int, EXCLUDE USING btree (k WITH =));
SELECT upsert_increment('e_excl', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
-- INCLUDE columns are not keys
CREATE TABLE e_incl (k int, extra int, n int, UNIQUE (k) INCLUDE (extra));
SELECT upsert_increment('e_incl', '{"k": 1, "extra": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e_incl', '{"k": 1}', '{"n": 1}', '{"extra": 1}');

-- a NULL key under a NULLS DISTINCT index (22004)
SELECT upsert_increment('e', '{"a": 1, "b": null}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE

-- deltas: non-numeric column (42804), non-number value (22023), null (22004)
SELECT upsert_increment('e', '{"id": 1}', '{"c": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '{"n": "1"}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '{"n": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', '{"id": 1}', '{"n": {"a": 1}}');
\echo :LAST_ERROR_SQLSTATE

-- The same errors come from upsert_increment_returning() and from batches.
SELECT * FROM upsert_increment_returning('e', '{"a": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('e', jsonb_build_object('id', g), '{"nope": 1}') FROM generate_series(1, 3) g;
\echo :LAST_ERROR_SQLSTATE

-- Permission and read-only errors are PostgreSQL's own.
BEGIN READ ONLY;
SELECT upsert_increment('e_incl', '{"k": 1}', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Nothing above wrote a row (but e_incl, written once).
SELECT (SELECT count(*) FROM e) AS e, (SELECT count(*) FROM e_incl) AS e_incl;
