/* upsert_counter--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION upsert_counter" to load this file. \quit

--
-- The aggregate.  Its transition function is not strict (assign and
-- on_insert may be NULL) and writes nothing; the final function writes.
-- Everything runs with the caller's rights: nothing is SECURITY DEFINER.
--
CREATE FUNCTION upsert_increment_transfn(internal, regclass, jsonb, jsonb)
RETURNS internal
AS 'MODULE_PATHNAME', 'upsert_increment_transfn'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION upsert_increment_transfn(internal, regclass, jsonb, jsonb, jsonb)
RETURNS internal
AS 'MODULE_PATHNAME', 'upsert_increment_transfn'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION upsert_increment_transfn(internal, regclass, jsonb, jsonb, jsonb, jsonb)
RETURNS internal
AS 'MODULE_PATHNAME', 'upsert_increment_transfn'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION upsert_increment_finalfn(internal)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'upsert_increment_finalfn'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE AGGREGATE upsert_increment(target regclass, keys jsonb, deltas jsonb) (
	SFUNC = upsert_increment_transfn,
	STYPE = internal,
	FINALFUNC = upsert_increment_finalfn,
	FINALFUNC_MODIFY = READ_WRITE,
	PARALLEL = UNSAFE
);

CREATE AGGREGATE upsert_increment(target regclass, keys jsonb, deltas jsonb,
								  assign jsonb) (
	SFUNC = upsert_increment_transfn,
	STYPE = internal,
	FINALFUNC = upsert_increment_finalfn,
	FINALFUNC_MODIFY = READ_WRITE,
	PARALLEL = UNSAFE
);

CREATE AGGREGATE upsert_increment(target regclass, keys jsonb, deltas jsonb,
								  assign jsonb, on_insert jsonb) (
	SFUNC = upsert_increment_transfn,
	STYPE = internal,
	FINALFUNC = upsert_increment_finalfn,
	FINALFUNC_MODIFY = READ_WRITE,
	PARALLEL = UNSAFE
);

-- CREATE AGGREGATE records every aggregate as immutable, and the planner
-- then computes two identical calls in one query once: one write where the
-- query asked for two.  These aggregates write; say so.
UPDATE pg_catalog.pg_proc SET provolatile = 'v'
WHERE oid IN ('@extschema@.upsert_increment(pg_catalog.regclass, pg_catalog.jsonb, pg_catalog.jsonb)'::pg_catalog.regprocedure,
			  '@extschema@.upsert_increment(pg_catalog.regclass, pg_catalog.jsonb, pg_catalog.jsonb, pg_catalog.jsonb)'::pg_catalog.regprocedure,
			  '@extschema@.upsert_increment(pg_catalog.regclass, pg_catalog.jsonb, pg_catalog.jsonb, pg_catalog.jsonb, pg_catalog.jsonb)'::pg_catalog.regprocedure);

COMMENT ON AGGREGATE upsert_increment(regclass, jsonb, jsonb) IS
'upsert one row (no FROM) or a batch: add deltas to the row with these keys, creating it if needed; returns {"inserted": n, "updated": n}';
COMMENT ON AGGREGATE upsert_increment(regclass, jsonb, jsonb, jsonb) IS
'as upsert_increment(target, keys, deltas), also writing the assign values on insert and update';
COMMENT ON AGGREGATE upsert_increment(regclass, jsonb, jsonb, jsonb, jsonb) IS
'as upsert_increment(target, keys, deltas, assign), also writing the on_insert values when the row is created';

CREATE FUNCTION upsert_increment_returning(
	target regclass, keys jsonb, deltas jsonb,
	assign jsonb DEFAULT NULL, on_insert jsonb DEFAULT NULL,
	OUT inserted boolean, OUT new_row jsonb)
RETURNS record
AS 'MODULE_PATHNAME', 'upsert_increment_returning'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_increment_returning(regclass, jsonb, jsonb, jsonb, jsonb) IS
'upsert one row and return whether it was created and the row as it now is';

-- Used by the generated statements only: counts the rows that take the
-- ON CONFLICT DO UPDATE path and returns its argument unchanged.
CREATE FUNCTION upsert_counter_note_update(anyelement)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'upsert_counter_note_update'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_counter_note_update(anyelement) IS
'internal: counts rows updated by upsert_increment(); returns its argument';

CREATE FUNCTION upsert_counter_cache(
	OUT target regclass, OUT arbiter regclass,
	OUT key_columns text[], OUT delta_columns text[],
	OUT assign_columns text[], OUT on_insert_columns text[],
	OUT form text, OUT calls bigint, OUT valid boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'upsert_counter_cache'
LANGUAGE C VOLATILE PARALLEL RESTRICTED STRICT;

COMMENT ON FUNCTION upsert_counter_cache() IS
'the plans this backend has cached, one row per shape and statement form';

CREATE FUNCTION upsert_counter_cache_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'upsert_counter_cache_reset'
LANGUAGE C VOLATILE PARALLEL RESTRICTED STRICT;

COMMENT ON FUNCTION upsert_counter_cache_reset() IS
'drop the plans this backend has cached';
