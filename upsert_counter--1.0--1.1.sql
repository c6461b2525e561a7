/* upsert_counter--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION upsert_counter UPDATE TO '1.1'" to load this file. \quit

-- 1.1: commit-time flush (setting upsert_counter.flush = commit).

CREATE FUNCTION upsert_counter_flush()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'upsert_counter_flush'
LANGUAGE C VOLATILE PARALLEL UNSAFE STRICT;

COMMENT ON FUNCTION upsert_counter_flush() IS
'write the rows upsert_increment() buffered in commit mode now; returns {"inserted": n, "updated": m}';
