-- upsert_counter over PL/Proxy: what every shard database runs once.
--
--   psql -d shardN -f plproxy/shard.sql     (after CREATE EXTENSION upsert_counter)
--
-- Creates schema upsert_counter_shard with the functions the proxy calls.
-- They call the extension by its schema (found here, once), so the proxy's
-- calls do not depend on the shard's search_path for the extension; the
-- target table name is resolved by the connecting role's search_path, as
-- any regclass is.  shard_key is unused here: the proxy routed by it.

CREATE SCHEMA IF NOT EXISTS upsert_counter_shard;

DO $do$
DECLARE
	ext_schema text;
BEGIN
	SELECT n.nspname INTO ext_schema
	FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
	WHERE e.extname = 'upsert_counter';
	IF ext_schema IS NULL THEN
		RAISE EXCEPTION 'upsert_counter is not installed in this database'
			USING ERRCODE = 'undefined_object',
				  HINT = 'Run CREATE EXTENSION upsert_counter first.';
	END IF;

	-- one row: the extension's plain single-row function
	EXECUTE pg_catalog.format($f$
		CREATE OR REPLACE FUNCTION upsert_counter_shard.upsert_increment(
			target text, shard_key text, keys jsonb, deltas jsonb,
			assign jsonb, on_insert jsonb)
		RETURNS jsonb LANGUAGE sql VOLATILE
		AS 'SELECT %I.upsert_increment_call(target::pg_catalog.regclass, keys, deltas, assign, on_insert)'
	$f$, ext_schema);

	-- one shard's part of a batch: merged, sorted and written by the
	-- aggregate, rows in the order the proxy received them
	EXECUTE pg_catalog.format($f$
		CREATE OR REPLACE FUNCTION upsert_counter_shard.upsert_increment_many(
			target text, shard_keys text[], keys jsonb[], deltas jsonb[],
			assign jsonb[], on_insert jsonb[])
		RETURNS SETOF jsonb LANGUAGE sql VOLATILE
		AS 'SELECT %I.upsert_increment(target::pg_catalog.regclass, u.k, u.d, u.a, u.o ORDER BY u.ord)
			FROM ROWS FROM (pg_catalog.unnest(keys), pg_catalog.unnest(deltas),
							pg_catalog.unnest(assign), pg_catalog.unnest(on_insert))
				 WITH ORDINALITY AS u(k, d, a, o, ord)'
	$f$, ext_schema);

	-- get-or-create / returning form
	EXECUTE pg_catalog.format($f$
		CREATE OR REPLACE FUNCTION upsert_counter_shard.upsert_increment_returning(
			target text, shard_key text, keys jsonb, deltas jsonb,
			assign jsonb, on_insert jsonb, OUT inserted boolean, OUT new_row jsonb)
		LANGUAGE sql VOLATILE
		AS 'SELECT * FROM %I.upsert_increment_returning(target::pg_catalog.regclass, keys, deltas, assign, on_insert)'
	$f$, ext_schema);
END
$do$;
