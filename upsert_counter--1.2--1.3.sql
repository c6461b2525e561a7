/* upsert_counter--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION upsert_counter UPDATE TO '1.3'" to load this file. \quit

-- What a FROM-less call of upsert_increment() is planned as: the aggregate
-- the query named comes as called_as, and the function checks the caller's
-- EXECUTE right on it, so that a REVOKE on the aggregate holds for both
-- forms.
CREATE FUNCTION upsert_increment_call(target regclass, keys jsonb, deltas jsonb,
									  assign jsonb, on_insert jsonb,
									  called_as regprocedure)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'upsert_increment_call'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_increment_call(regclass, jsonb, jsonb, jsonb, jsonb, regprocedure) IS
'internal: a FROM-less call of the upsert_increment() aggregate called_as, planned as a function call; checks EXECUTE on called_as';

-- Every target but a Citus table now counts with these (no system column
-- in RETURNING, so the statement needs only the plain statement's rights).
COMMENT ON FUNCTION upsert_counter_note_update(anyelement) IS
'internal: marks the row being written by upsert_increment() as updated; returns its argument';
COMMENT ON FUNCTION upsert_counter_note_row(anyelement) IS
'internal: clears the update mark for the next row upsert_increment() proposes; returns its argument';
COMMENT ON FUNCTION upsert_counter_take_update() IS
'internal: whether the row upsert_increment() just wrote was updated; clears the mark';
