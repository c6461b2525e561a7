/* upsert_counter--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION upsert_counter UPDATE TO '1.2'" to load this file. \quit

-- 1.2: safety release.  The fixes are in the module; the SQL objects are
-- the same, and upsert_counter_note_update() is now used only for
-- partitioned targets (plain tables count with RETURNING).

COMMENT ON FUNCTION upsert_counter_note_update(anyelement) IS
'internal: marks the row being written by upsert_increment() on a partitioned table as updated; returns its argument';

-- With it, on partitioned tables only: each proposed row clears the mark,
-- RETURNING reads it.
CREATE FUNCTION upsert_counter_note_row(anyelement)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'upsert_counter_note_row'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_counter_note_row(anyelement) IS
'internal: clears the update mark for the next row upsert_increment() proposes on a partitioned table; returns its argument';

CREATE FUNCTION upsert_counter_take_update()
RETURNS boolean
AS 'MODULE_PATHNAME', 'upsert_counter_take_update'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_counter_take_update() IS
'internal: whether the row upsert_increment() just wrote to a partitioned table was updated; clears the mark';

-- One row as a plain function: what a FROM-less call of the aggregate is
-- planned as, and callable where an aggregate is not.
CREATE FUNCTION upsert_increment_call(target regclass, keys jsonb, deltas jsonb,
									  assign jsonb DEFAULT NULL, on_insert jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'upsert_increment_call'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_increment_call(regclass, jsonb, jsonb, jsonb, jsonb) IS
'upsert one row, as upsert_increment() does for a single row, as a plain function';

-- The typed batch input: rows as records whose field names are column
-- names; deltas, assign and on_insert name the fields that play those
-- roles, every other field is a key.  No JSON per row.
CREATE FUNCTION upsert_increment_rows_transfn(internal, regclass, record, text[])
RETURNS internal
AS 'MODULE_PATHNAME', 'upsert_increment_rows_transfn'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION upsert_increment_rows_transfn(internal, regclass, record, text[], text[])
RETURNS internal
AS 'MODULE_PATHNAME', 'upsert_increment_rows_transfn'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION upsert_increment_rows_transfn(internal, regclass, record, text[], text[], text[])
RETURNS internal
AS 'MODULE_PATHNAME', 'upsert_increment_rows_transfn'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE AGGREGATE upsert_increment_rows(target regclass, "row" record, deltas text[]) (
	SFUNC = upsert_increment_rows_transfn,
	STYPE = internal,
	FINALFUNC = upsert_increment_finalfn,
	FINALFUNC_MODIFY = READ_WRITE,
	PARALLEL = UNSAFE
);

CREATE AGGREGATE upsert_increment_rows(target regclass, "row" record, deltas text[],
									   assign text[]) (
	SFUNC = upsert_increment_rows_transfn,
	STYPE = internal,
	FINALFUNC = upsert_increment_finalfn,
	FINALFUNC_MODIFY = READ_WRITE,
	PARALLEL = UNSAFE
);

CREATE AGGREGATE upsert_increment_rows(target regclass, "row" record, deltas text[],
									   assign text[], on_insert text[]) (
	SFUNC = upsert_increment_rows_transfn,
	STYPE = internal,
	FINALFUNC = upsert_increment_finalfn,
	FINALFUNC_MODIFY = READ_WRITE,
	PARALLEL = UNSAFE
);

-- as for upsert_increment(): two identical calls in one query are two writes
UPDATE pg_catalog.pg_proc SET provolatile = 'v'
WHERE oid IN ('@extschema@.upsert_increment_rows(pg_catalog.regclass, pg_catalog.record, pg_catalog.text[])'::pg_catalog.regprocedure,
			  '@extschema@.upsert_increment_rows(pg_catalog.regclass, pg_catalog.record, pg_catalog.text[], pg_catalog.text[])'::pg_catalog.regprocedure,
			  '@extschema@.upsert_increment_rows(pg_catalog.regclass, pg_catalog.record, pg_catalog.text[], pg_catalog.text[], pg_catalog.text[])'::pg_catalog.regprocedure);

COMMENT ON AGGREGATE upsert_increment_rows(regclass, record, text[]) IS
'upsert a batch given as rows whose field names are column names: the fields named in deltas are added, every other field is a key';
COMMENT ON AGGREGATE upsert_increment_rows(regclass, record, text[], text[]) IS
'as upsert_increment_rows(target, row, deltas), the fields named in assign written on insert and update';
COMMENT ON AGGREGATE upsert_increment_rows(regclass, record, text[], text[], text[]) IS
'as upsert_increment_rows(target, row, deltas, assign), the fields named in on_insert written when the row is created';
