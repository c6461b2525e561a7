/* upsert_counter--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION upsert_counter UPDATE TO '1.2'" to load this file. \quit

-- 1.2: safety release.  The fixes are in the module; the SQL objects are
-- the same, and upsert_counter_note_update() is now used only for
-- partitioned targets (plain tables count with RETURNING).

COMMENT ON FUNCTION upsert_counter_note_update(anyelement) IS
'internal: counts rows updated by upsert_increment() on partitioned tables; returns its argument';

-- One row as a plain function: what a FROM-less call of the aggregate is
-- planned as, and callable where an aggregate is not.
CREATE FUNCTION upsert_increment_call(target regclass, keys jsonb, deltas jsonb,
									  assign jsonb DEFAULT NULL, on_insert jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'upsert_increment_call'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_increment_call(regclass, jsonb, jsonb, jsonb, jsonb) IS
'upsert one row, as upsert_increment() does for a single row, as a plain function';
