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

-- Background mode (upsert_counter.flush = background): a call appends its
-- row here instead of writing the target; a fold (a background worker, or
-- upsert_counter_fold()) takes the rows of a target in id order, merges
-- them per key, writes them as the user who logged them and deletes them,
-- in one transaction.  Values are stored in their types' binary form, so
-- that what was converted under the caller's settings (DateStyle,
-- TimeZone) is folded as converted.
CREATE TABLE upsert_counter_delta (
	id			bigint GENERATED ALWAYS AS IDENTITY,
	target		regclass NOT NULL,
	caller		oid NOT NULL,			-- the role that logged the row ...
	caller_name	name NOT NULL,			-- ... and its name, for after a restore
	names		text[] NOT NULL,		-- column names, role by role
	nrole		smallint[] NOT NULL,	-- keys, deltas, assign, on_insert
	types		regtype[] NOT NULL,		-- each value's type when logged
	vals		bytea[] NOT NULL,		-- each value, binary; NULL for SQL NULL
	logged_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (target, id)
);
REVOKE ALL ON upsert_counter_delta FROM PUBLIC;
-- inserted and deleted all day: keep it vacuumed
ALTER TABLE upsert_counter_delta SET (autovacuum_vacuum_scale_factor = 0.0,
	autovacuum_vacuum_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0.0,
	autovacuum_vacuum_insert_threshold = 10000);
-- pending deltas are data: pg_dump keeps them, also when the database's
-- owner runs it
SELECT pg_catalog.pg_extension_config_dump('upsert_counter_delta', '');
SELECT pg_catalog.pg_extension_config_dump('upsert_counter_delta_id_seq', '');
GRANT SELECT ON upsert_counter_delta, upsert_counter_delta_id_seq TO pg_database_owner;

COMMENT ON TABLE upsert_counter_delta IS
'background mode: rows logged by upsert_increment() and not yet folded into their target';

-- What the fold last did per target, written by the fold.
CREATE TABLE upsert_counter_fold_status (
	target			regclass PRIMARY KEY,
	last_fold		timestamptz,		-- last successful fold
	folded			bigint NOT NULL DEFAULT 0,	-- deltas folded, in all
	last_lag		interval,			-- age of the oldest delta it folded
	last_error		text,				-- the last failure, until a fold succeeds
	last_sqlstate	text,
	last_error_at	timestamptz,
	failures		integer NOT NULL DEFAULT 0	-- failures in a row
);
REVOKE ALL ON upsert_counter_fold_status FROM PUBLIC;

COMMENT ON TABLE upsert_counter_fold_status IS
'background mode: the last fold of each target, and its last error';

-- The backlog per target, for every target the current user may read a
-- column of (and targets that no longer exist, while rows are pending).
CREATE VIEW upsert_counter_backlog WITH (security_barrier) AS
SELECT coalesce(d.target, s.target) AS target,
	   coalesce(d.pending, 0) AS pending,
	   d.oldest AS oldest_logged_at,
	   pg_catalog.now() OPERATOR(pg_catalog.-) d.oldest AS oldest_age,
	   s.last_fold, s.folded, s.last_lag,
	   -- the message may quote a row: for who may read all of the table
	   CASE WHEN pg_catalog.has_table_privilege(coalesce(d.target, s.target), 'SELECT') IS TRUE
			THEN s.last_error END AS last_error,
	   s.last_sqlstate, s.last_error_at, s.failures
FROM (SELECT target, pg_catalog.count(*) AS pending, pg_catalog.min(logged_at) AS oldest
	  FROM @extschema@.upsert_counter_delta GROUP BY target) d
	 FULL JOIN @extschema@.upsert_counter_fold_status s ON s.target OPERATOR(pg_catalog.=) d.target
WHERE CASE WHEN pg_catalog.has_any_column_privilege(coalesce(d.target, s.target), 'SELECT') IS NULL
		   THEN d.pending IS NOT NULL	-- a dropped target: while rows are pending
		   ELSE pg_catalog.has_any_column_privilege(coalesce(d.target, s.target), 'SELECT') END;
GRANT SELECT ON upsert_counter_backlog TO PUBLIC;

COMMENT ON VIEW upsert_counter_backlog IS
'background mode: per target, the deltas not yet folded, the age of the oldest, the last fold and the last error';

-- Fold now, in the calling transaction: the pending deltas of target (of
-- every target the caller may insert into, if NULL).
CREATE FUNCTION upsert_counter_fold(target regclass DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'upsert_counter_fold'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_counter_fold(regclass) IS
'background mode: fold the pending deltas of target (or of every target the caller may insert into) now, in this transaction; returns the logged rows folded and withheld, and the table rows inserted and updated';

-- A counter row as it will be once everything pending is folded.
CREATE FUNCTION upsert_counter_read(target regclass, keys jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'upsert_counter_read'
LANGUAGE C STABLE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_counter_read(regclass, jsonb) IS
'background mode: the row with these keys as to_jsonb() gives it, with the deltas not yet folded applied; NULL if neither exists';

-- Drop the pending deltas of a target (before dropping the table, say).
CREATE FUNCTION upsert_counter_discard(target regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'upsert_counter_discard'
LANGUAGE C VOLATILE PARALLEL UNSAFE STRICT;

COMMENT ON FUNCTION upsert_counter_discard(regclass) IS
'background mode: delete the pending deltas of target without folding them; for the table''s owner';

-- Counting on partitioned Citus tables, where Citus takes only functions
-- declared immutable in SET and RETURNING (and a partitioned table has no
-- system columns in RETURNING): the same flag as upsert_counter_note_update()
-- and upsert_counter_take_update(), called only with row values as
-- arguments, so that no planner folds them.
CREATE FUNCTION upsert_counter_citus_note_update(anyelement)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'upsert_counter_citus_note_update'
LANGUAGE C IMMUTABLE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_counter_citus_note_update(anyelement) IS
'internal: marks the row being written to a partitioned Citus table as updated; returns its argument (declared immutable for Citus, called only with row values)';

CREATE FUNCTION upsert_counter_citus_take_update(anyelement)
RETURNS boolean
AS 'MODULE_PATHNAME', 'upsert_counter_citus_take_update'
LANGUAGE C IMMUTABLE PARALLEL UNSAFE;

COMMENT ON FUNCTION upsert_counter_citus_take_update(anyelement) IS
'internal: whether the row just written to a partitioned Citus table was updated; clears the mark (declared immutable for Citus; its argument is a row value only so that it is never folded)';

-- A table with rows logged in background mode and not folded yet cannot be
-- dropped: its rows could never be folded, and a dump would carry them as
-- a bare OID that may name another table after a restore.
CREATE FUNCTION upsert_counter_sql_drop()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'upsert_counter_sql_drop'
LANGUAGE C;

COMMENT ON FUNCTION upsert_counter_sql_drop() IS
'internal: refuses to drop a table that has rows logged in background mode and not folded yet';

CREATE EVENT TRIGGER upsert_counter_sql_drop ON sql_drop
	EXECUTE FUNCTION upsert_counter_sql_drop();
