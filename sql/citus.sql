-- Citus tables without Citus: the extension finds them in Citus' catalog
-- pg_catalog.pg_dist_partition by name.  Here a stand-in of that catalog
-- (its first column, logicalrelid regclass) marks a table as Citus': its
-- calls are planned per call (Citus refuses generic plans of
-- parameterized INSERT ... SELECT), and the statements call no function
-- that is not immutable: they count with RETURNING xmax = 0 instead of
-- our functions, RETURNING gives t.*, and the returned jsonb is built in
-- C.  README "Scaling out" has the runs on real Citus.
SET allow_system_table_mods = on;
CREATE TABLE pg_catalog.pg_dist_partition (logicalrelid regclass NOT NULL, partmethod "char", partkey text);
CREATE TABLE pg_catalog.pg_dist_shard (logicalrelid regclass NOT NULL, shardid bigint NOT NULL,
                                       shardminvalue text, shardmaxvalue text);
RESET allow_system_table_mods;
-- Citus stores the distribution column as a node string ({VAR ...}) in the
-- server's own format, which differs between major versions: take one from
-- a CHECK constraint on that column, in this server's format.
CREATE FUNCTION cit_partkey(t regclass, col name) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	k text;
BEGIN
	EXECUTE format('ALTER TABLE %s ADD CONSTRAINT cit_partkey_probe CHECK (%I IS NOT NULL) NOT VALID', t, col);
	SELECT split_part(split_part(conbin::text, ':arg ', 2), ' :nulltesttype', 1) INTO k
	FROM pg_constraint WHERE conrelid = t AND conname = 'cit_partkey_probe';
	EXECUTE format('ALTER TABLE %s DROP CONSTRAINT cit_partkey_probe', t);
	RETURN k;
END$$;

CREATE TABLE cit_dist (tenant int, day date, hits bigint NOT NULL DEFAULT 0, dropme int, label text,
                       UNIQUE (tenant, day));
ALTER TABLE cit_dist DROP COLUMN dropme;
CREATE TABLE cit_local (tenant int, day date, hits bigint NOT NULL DEFAULT 0, UNIQUE (tenant, day));
INSERT INTO pg_catalog.pg_dist_partition VALUES ('cit_dist', 'h');

-- three rows of one key in one call: merged, one insert of 3
SELECT upsert_increment('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}') FROM generate_series(1, 3);
SELECT upsert_increment('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('cit_local', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('cit_local', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('cit_local', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT target, form, calls FROM upsert_counter_cache()
WHERE target IN ('cit_dist'::regclass, 'cit_local'::regclass) ORDER BY 1, 2;
-- the statements, as an error's context shows them: no function of ours
-- on the Citus table, our counting functions on the local one
SELECT upsert_increment('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 9223372036854775807}');
SELECT upsert_increment('cit_local', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 9223372036854775807}');

-- returning, and get-or-create's lookup: the row as to_jsonb() gives it,
-- the dropped column left out
SELECT * FROM upsert_increment_returning('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}', '{"label": "x"}');
SELECT * FROM upsert_increment_returning('cit_dist', '{"tenant": 2, "day": "2026-11-22"}', '{}');
SELECT * FROM upsert_increment_returning('cit_dist', '{"tenant": 2, "day": "2026-11-22"}', '{}');
SELECT new_row = to_jsonb(d) AS same_as_to_jsonb
FROM upsert_increment_returning('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{}'),
     cit_dist d WHERE d.tenant = 1;
-- a column added after the plan was cached is in the next returned row
ALTER TABLE cit_dist ADD COLUMN extra int DEFAULT 7;
SELECT * FROM upsert_increment_returning('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT tenant, day, hits, label, extra FROM cit_dist ORDER BY 1;

-- no longer Citus': the next shape resolution counts with our functions
DELETE FROM pg_catalog.pg_dist_partition;
ALTER TABLE cit_dist ADD COLUMN other int;	-- invalidates the cached shape
SELECT upsert_increment('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 9223372036854775807}');

-- A hash-distributed table (partmethod 'h', the distribution column as
-- Citus stores it, four shards over the int4 hash range): a batch is
-- written shard by shard, one statement per shard it touches, each in key
-- order; the counts stay exact.
CREATE TABLE cit_hash (tenant int, day date, hits bigint NOT NULL DEFAULT 0, UNIQUE (tenant, day));
INSERT INTO pg_catalog.pg_dist_partition VALUES ('cit_hash', 'h', cit_partkey('cit_hash', 'tenant'));
SELECT partkey LIKE '{VAR :varno 1 :varattno 1 :vartype 23 %' AS var_of_tenant
FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'cit_hash'::regclass;
INSERT INTO pg_catalog.pg_dist_shard VALUES
  ('cit_hash', 4, '1073741824', '2147483647'), ('cit_hash', 1, '-2147483648', '-1073741825'),
  ('cit_hash', 3, '0', '1073741823'), ('cit_hash', 2, '-1073741824', '-1');
-- which shards the tenants 1..12 fall in, by the type's hash function as Citus hashes
SELECT (hashint4(t) + 2147483648) / 1073741824 AS shard, count(*) AS tenants
FROM generate_series(1, 12) t GROUP BY 1 ORDER BY 1;
SELECT upsert_increment_rows('cit_hash', r, '{hits}')
FROM (SELECT 1 + g % 12 AS tenant, DATE '2026-11-22' AS day, 1 AS hits FROM generate_series(1, 120) g) r;
SELECT upsert_increment('cit_hash', jsonb_build_object('tenant', 1 + g % 12, 'day', '2026-11-22'), '{"hits": 1}')
FROM generate_series(1, 120) g;
-- two batches, each one statement per shard touched
SELECT form, calls FROM upsert_counter_cache() WHERE target = 'cit_hash'::regclass ORDER BY 1;
SELECT count(*) AS keys, sum(hits) AS hits, min(hits), max(hits) FROM cit_hash;
-- commit mode writes its buffer shard by shard too: four statements more
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('cit_hash', jsonb_build_object('tenant', t, 'day', '2026-11-22'), '{"hits": 100}')
FROM generate_series(1, 12) t;
COMMIT;
SELECT form, calls FROM upsert_counter_cache() WHERE target = 'cit_hash'::regclass ORDER BY 1;
SELECT sum(hits) AS hits FROM cit_hash;
-- background mode on a Citus table: the fold writes shard by shard too
SET upsert_counter.fold_worker = off;
SET upsert_counter.flush = background;
SELECT upsert_increment('cit_hash', jsonb_build_object('tenant', 1 + g % 12, 'day', '2026-11-22'), '{"hits": 1}')
FROM generate_series(1, 24) g;
SELECT upsert_increment('cit_hash', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
RESET upsert_counter.flush;
SELECT upsert_counter_read('cit_hash', '{"tenant": 1, "day": "2026-11-22"}') ->> 'hits' AS with_pending;
SELECT upsert_counter_fold('cit_hash');
SELECT sum(hits) AS hits, (SELECT hits FROM cit_hash WHERE tenant = 1) AS tenant_1 FROM cit_hash;
RESET upsert_counter.fold_worker;
TRUNCATE upsert_counter_fold_status;
-- An aggregate that Citus pushes down to the shards (GROUP BY the
-- distribution column) runs on a worker over a shard: refused with the
-- way out, before anything is written.  Here a table named as Citus names
-- a shard of cit_hash (shard 2) stands in for one.
CREATE TABLE cit_hash_2 (tenant int, day date, hits bigint);
INSERT INTO cit_hash_2 SELECT t, '2026-11-22', 1 FROM generate_series(1, 3) t;
SELECT tenant, upsert_increment('cit_hash', jsonb_build_object('tenant', tenant, 'day', day), '{"hits": 1}')
FROM cit_hash_2 GROUP BY tenant, day;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment_rows('cit_hash', s, '{hits}') FROM cit_hash_2 s;
\echo :LAST_ERROR_SQLSTATE
-- a table whose name only looks like a shard's is no shard
CREATE TABLE cit_hash_77 (tenant int, day date, hits bigint);
INSERT INTO cit_hash_77 VALUES (1, '2026-11-22', 1);
SELECT upsert_increment('cit_hash', jsonb_build_object('tenant', tenant, 'day', day), '{"hits": 1}')
FROM cit_hash_77;
SELECT sum(hits) AS hits FROM cit_hash;
-- a shard of a table whose name is too long for "_<shardid>": Citus
-- clips the name and adds the name's hash (hashtext() is the same hash)
CREATE TABLE cit_long_name_that_is_too_long_for_a_shard_id_to_be_added (tenant int);
INSERT INTO pg_catalog.pg_dist_shard VALUES
  ('cit_long_name_that_is_too_long_for_a_shard_id_to_be_added', 102008, NULL, NULL);
SELECT format('%s_%s_102008', left(n, 47), lpad(to_hex(hashtext(n)), 8, '0')) AS long_shard
FROM (SELECT 'cit_long_name_that_is_too_long_for_a_shard_id_to_be_added' AS n) s \gset
SELECT :'long_shard' AS long_shard, length(:'long_shard');
CREATE TABLE :"long_shard" (tenant int, day date, hits bigint);
INSERT INTO :"long_shard" VALUES (1, '2026-11-22', 1);
SELECT tenant, upsert_increment('cit_hash', jsonb_build_object('tenant', tenant, 'day', day), '{"hits": 1}')
FROM :"long_shard" GROUP BY tenant, day;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE :"long_shard", cit_long_name_that_is_too_long_for_a_shard_id_to_be_added;
DROP TABLE cit_hash_2, cit_hash_77;
-- a distribution column the call does not name (here not a key): no split
INSERT INTO pg_catalog.pg_dist_partition VALUES ('cit_local', 'h', cit_partkey('cit_local', 'hits'));
ALTER TABLE cit_local ADD COLUMN note text;	-- a new shape, read as Citus'
SELECT upsert_increment('cit_local', jsonb_build_object('tenant', t, 'day', '2026-11-22'), '{}')
FROM generate_series(1, 12) t;
SELECT form, calls FROM upsert_counter_cache() WHERE target = 'cit_local'::regclass AND form = 'batch';

-- A partitioned Citus table: no system column in RETURNING, no volatile
-- function of ours either; the flag is kept by functions declared
-- immutable, called with row values only.  Every form counts right.
CREATE TABLE cit_part (tenant int, day date, hits bigint NOT NULL DEFAULT 0, label text,
                       PRIMARY KEY (tenant, day)) PARTITION BY RANGE (day);
CREATE TABLE cit_part_11 PARTITION OF cit_part FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE cit_part_12 PARTITION OF cit_part FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
INSERT INTO pg_catalog.pg_dist_partition VALUES ('cit_part', 'h', cit_partkey('cit_part', 'tenant'));
INSERT INTO pg_catalog.pg_dist_shard VALUES
  ('cit_part', 11, '-2147483648', '-1'), ('cit_part', 12, '0', '2147483647');
SELECT upsert_increment('cit_part', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('cit_part', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('cit_part', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}', '{"label": null}');
SELECT * FROM upsert_increment_returning('cit_part', '{"tenant": 1, "day": "2026-12-01"}', '{"hits": 5}');
SELECT * FROM upsert_increment_returning('cit_part', '{"tenant": 1, "day": "2026-12-01"}', '{"hits": 5}');
SELECT upsert_increment('cit_part', jsonb_build_object('tenant', g % 4, 'day', '2026-11-22'), '{"hits": 1}')
FROM generate_series(1, 8) g;
SELECT upsert_increment_rows('cit_part', r, '{hits}')
FROM (SELECT g % 4 AS tenant, DATE '2026-12-01' AS day, 1 AS hits FROM generate_series(1, 8) g) r;
BEGIN;
SET LOCAL upsert_counter.flush = commit;
SELECT upsert_increment('cit_part', jsonb_build_object('tenant', t, 'day', '2026-11-22'), '{"hits": 100}')
FROM generate_series(1, 5) t;
SELECT upsert_counter_flush();
COMMIT;
SELECT tableoid::regclass, tenant, day, hits FROM cit_part ORDER BY 2, 3;
-- the statements: counted by the immutable-declared flag functions; the
-- batch as rows of VALUES, one statement per shard (as an error shows)
SELECT upsert_increment('cit_part', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 9223372036854775807}');
SELECT upsert_increment('cit_part', jsonb_build_object('tenant', g, 'day', '2026-11-22'), '{"hits": 9223372036854775807}')
FROM generate_series(1, 2) g;
SELECT form, calls FROM upsert_counter_cache() WHERE target = 'cit_part'::regclass ORDER BY 1;
-- a BEFORE UPDATE row trigger on a partition could skip a row and leave
-- the flag set: such a table is refused
CREATE FUNCTION cit_skip() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER cit_skip BEFORE UPDATE ON cit_part_12 FOR EACH ROW EXECUTE FUNCTION cit_skip();
SELECT upsert_increment('cit_part', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
\echo :LAST_ERROR_SQLSTATE
-- get-or-create takes no update path: allowed
SELECT upsert_increment('cit_part', '{"tenant": 9, "day": "2026-11-22"}', '{}');
DROP TRIGGER cit_skip ON cit_part_12;
DROP FUNCTION cit_skip();
SELECT upsert_increment('cit_part', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');

DROP TABLE cit_dist, cit_local, cit_hash, cit_part;
DROP FUNCTION cit_partkey(regclass, name);
SET allow_system_table_mods = on;
DROP TABLE pg_catalog.pg_dist_shard;
DROP TABLE pg_catalog.pg_dist_partition;
RESET allow_system_table_mods;
