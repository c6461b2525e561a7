-- upsert_counter over PL/Proxy: the proxy database's functions.
--
--   psql -d proxy -f plproxy/proxy.sql      (after CREATE EXTENSION plproxy and
--                                            the cluster 'upsert_counter', below)
--
-- The cluster is a plproxy foreign server named upsert_counter whose
-- partitions p0 .. p(N-1) are the shard databases (N a power of two), with
-- a user mapping for the callers:
--
--   CREATE SERVER upsert_counter FOREIGN DATA WRAPPER plproxy
--       OPTIONS (p0 'dbname=shard0 host=10.0.0.1', p1 'dbname=shard1 host=10.0.0.2');
--   CREATE USER MAPPING FOR PUBLIC SERVER upsert_counter OPTIONS (user 'app');
--   GRANT USAGE ON FOREIGN SERVER upsert_counter TO app;
--
-- Routing: a call runs on partition hashtext(shard_key) mod N.  shard_key
-- is the text of one key column that every call for that key passes the
-- same way (the distribution column: ab_test_id::text for the hourly log),
-- so one key always lands on one shard.
--
-- Guarantees: each call is one autocommit transaction on one shard (PL/Proxy
-- runs remote calls in autocommit mode): exact and atomic per key, as on one
-- server.  There is no atomicity across shards: a batch commits shard by
-- shard, and rolling back the caller's transaction on the proxy does not
-- undo what the shards committed.  upsert_counter.flush = commit applies per
-- shard call (each remote call is its own transaction), so it buffers
-- nothing across calls.

CREATE SCHEMA IF NOT EXISTS upsert_counter_proxy;

-- one row: {"inserted": n, "updated": m} from the shard that owns it
CREATE OR REPLACE FUNCTION upsert_counter_proxy.upsert_increment(
	target text, shard_key text, keys jsonb, deltas jsonb,
	assign jsonb DEFAULT NULL, on_insert jsonb DEFAULT NULL)
RETURNS jsonb AS $$
	CLUSTER 'upsert_counter';
	RUN ON hashtext(shard_key);
	TARGET upsert_counter_shard.upsert_increment;
$$ LANGUAGE plproxy;

-- a batch: the arrays are split by shard_keys; every shard that gets rows
-- writes its part in one statement (merged, in key order) and returns its
-- {"inserted", "updated"}: one result row per shard touched
CREATE OR REPLACE FUNCTION upsert_counter_proxy.upsert_increment_many(
	target text, shard_keys text[], keys jsonb[], deltas jsonb[],
	assign jsonb[], on_insert jsonb[])
RETURNS SETOF jsonb AS $$
	CLUSTER 'upsert_counter';
	SPLIT shard_keys, keys, deltas, assign, on_insert;
	RUN ON hashtext(shard_keys);
	TARGET upsert_counter_shard.upsert_increment_many;
$$ LANGUAGE plproxy;

-- the returning / get-or-create form
CREATE OR REPLACE FUNCTION upsert_counter_proxy.upsert_increment_returning(
	target text, shard_key text, keys jsonb, deltas jsonb,
	assign jsonb DEFAULT NULL, on_insert jsonb DEFAULT NULL,
	OUT inserted boolean, OUT new_row jsonb)
AS $$
	CLUSTER 'upsert_counter';
	RUN ON hashtext(shard_key);
	TARGET upsert_counter_shard.upsert_increment_returning;
$$ LANGUAGE plproxy;
