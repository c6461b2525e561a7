-- Citus tables without Citus: the extension finds them in Citus' catalog
-- pg_catalog.pg_dist_partition by name.  Here a stand-in of that catalog
-- (its first column, logicalrelid regclass) marks a table as Citus': its
-- calls take no direct update path (Citus tables on the coordinator hold
-- no rows of their own) and are planned per call (Citus refuses generic
-- plans of parameterized INSERT ... SELECT).  The statements call no
-- function that is not immutable: RETURNING gives t.*, and the returned
-- jsonb is built in C.  README "Scaling out" has the runs on real Citus.
SET allow_system_table_mods = on;
CREATE TABLE pg_catalog.pg_dist_partition (logicalrelid regclass NOT NULL, partmethod "char");
RESET allow_system_table_mods;

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
-- the Citus table's updates all went through the statement, the local
-- table's through the direct update path
SELECT target, form, calls FROM upsert_counter_cache()
WHERE target IN ('cit_dist'::regclass, 'cit_local'::regclass) ORDER BY 1, 2;

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

-- no longer Citus': the next shape resolution takes the direct path again
DELETE FROM pg_catalog.pg_dist_partition;
ALTER TABLE cit_dist ADD COLUMN other int;	-- invalidates the cached shape
SELECT upsert_increment('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT upsert_increment('cit_dist', '{"tenant": 1, "day": "2026-11-22"}', '{"hits": 1}');
SELECT form, calls FROM upsert_counter_cache()
WHERE target = 'cit_dist'::regclass AND form IN ('single', 'fast_update') ORDER BY 1;

DROP TABLE cit_dist, cit_local;
SET allow_system_table_mods = on;
DROP TABLE pg_catalog.pg_dist_partition;
RESET allow_system_table_mods;
