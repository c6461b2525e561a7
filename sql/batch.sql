--
-- batch: upsert_increment() as an aggregate over many rows
--
CREATE TABLE counts (
    k1 int NOT NULL,
    k2 text NOT NULL,
    n bigint NOT NULL DEFAULT 0,
    m numeric,
    label text,
    first_seen text,
    PRIMARY KEY (k1, k2)
);
INSERT INTO counts (k1, k2, n) VALUES (1, 'a', 100);

-- Duplicate keys in one batch are merged, deltas summed: no "cannot affect
-- row a second time", no lost increment.
SELECT upsert_increment('counts', jsonb_build_object('k1', g % 3, 'k2', 'a'), '{"n": 1}')
FROM generate_series(1, 30) g;
SELECT * FROM counts ORDER BY k1, k2;

-- The same input written by hand fails; that is what we spare users.
INSERT INTO counts AS t (k1, k2, n)
SELECT g % 3, 'a', 1 FROM generate_series(1, 30) g
ON CONFLICT (k1, k2) DO UPDATE SET n = t.n + EXCLUDED.n;

-- Zero input rows write nothing and return zeros.
SELECT upsert_increment('counts', jsonb_build_object('k1', g, 'k2', 'a'), '{"n": 1}')
FROM generate_series(1, 0) g;

-- With GROUP BY, each group is its own batch.
SELECT g % 2 AS grp,
       upsert_increment('counts', jsonb_build_object('k1', 10 + g % 4, 'k2', 'g'), '{"n": 1}')
FROM generate_series(1, 8) g GROUP BY g % 2 ORDER BY 1;
SELECT k1, k2, n FROM counts WHERE k2 = 'g' ORDER BY k1;

-- assign: the last row in aggregate input order wins, and ORDER BY inside
-- the call decides it; on_insert: the first row wins.
SELECT upsert_increment('counts', '{"k1": 20, "k2": "x"}', jsonb_build_object('n', 1),
                        jsonb_build_object('label', 'row ' || g),
                        jsonb_build_object('first_seen', 'row ' || g)
                        ORDER BY g)
FROM generate_series(1, 5) g;
SELECT upsert_increment('counts', '{"k1": 21, "k2": "x"}', jsonb_build_object('n', 1),
                        jsonb_build_object('label', 'row ' || g),
                        jsonb_build_object('first_seen', 'row ' || g)
                        ORDER BY g DESC)
FROM generate_series(1, 5) g;
SELECT k1, k2, n, label, first_seen FROM counts WHERE k2 = 'x' ORDER BY k1;
-- On an existing row, on_insert is not written and assign is.
SELECT upsert_increment('counts', '{"k1": 20, "k2": "x"}', '{"n": 1}',
                        jsonb_build_object('label', 'again ' || g),
                        jsonb_build_object('first_seen', 'again ' || g)
                        ORDER BY g)
FROM generate_series(1, 3) g;
SELECT k1, k2, n, label, first_seen FROM counts WHERE k2 = 'x' ORDER BY k1;
-- An assigned NULL is a value like any other: the last one wins.
SELECT upsert_increment('counts', '{"k1": 20, "k2": "x"}', '{}',
                        CASE WHEN g = 2 THEN '{"label": null}'::jsonb
                             ELSE jsonb_build_object('label', 'v' || g) END
                        ORDER BY g)
FROM generate_series(1, 2) g;
SELECT k1, k2, label FROM counts WHERE k1 = 20;

-- numeric deltas are summed exactly
SELECT upsert_increment('counts', '{"k1": 30, "k2": "m"}', jsonb_build_object('m', 0.1))
FROM generate_series(1, 10) g;
SELECT k1, k2, m FROM counts WHERE k1 = 30;

-- Rows may name different column sets in one call, but one target: a
-- call whose target changes between rows is refused (1.3), and nothing
-- is written.  GROUP BY the target makes one call per table.
CREATE TABLE other (id int PRIMARY KEY, hits int);
CREATE TABLE mixed AS
SELECT * FROM (VALUES (1, 'counts'::regclass, '{"k1": 40, "k2": "a"}'::jsonb, '{"n": 1}'::jsonb),
                      (2, 'other', '{"id": 1}', '{"hits": 1}'),
                      (3, 'counts', '{"k1": 40, "k2": "a"}', '{"m": 2.5}'),
                      (4, 'other', '{"id": 1}', '{"hits": 1}'),
                      (5, 'counts', '{"k1": 40, "k2": "a"}', '{"n": 1}')) AS v(i, t, k, d);
SELECT upsert_increment(t, k, d ORDER BY i) FROM mixed;
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment_rows(t, r, '{hits}' ORDER BY r.id)
FROM (VALUES ('other'::regclass, 1), ('counts', 2)) v(t, id), LATERAL (SELECT v.id AS id, 1 AS hits) r;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM other;
SELECT t, upsert_increment(t, k, d ORDER BY i) FROM mixed GROUP BY t ORDER BY t::text;
SELECT k1, k2, n, m FROM counts WHERE k1 = 40;
SELECT * FROM other;
DROP TABLE mixed;

-- Batches are written in chunks of upsert_counter.batch_size distinct keys;
-- the result does not depend on the chunk size.
CREATE TABLE chunked (k int PRIMARY KEY, n int);
SET upsert_counter.batch_size = 7;
SELECT upsert_increment('chunked', jsonb_build_object('k', g % 50), '{"n": 1}')
FROM generate_series(1, 1000) g;
RESET upsert_counter.batch_size;
SELECT upsert_increment('chunked', jsonb_build_object('k', g % 60), '{"n": 1}')
FROM generate_series(1, 1200) g;
SELECT count(*), sum(n), min(n), max(n) FROM chunked;
SELECT k, n FROM chunked WHERE k IN (0, 49, 50, 59) ORDER BY k;

-- A larger batch against raw SQL on the same input.
CREATE TABLE big_ours (a int, b text, n bigint, PRIMARY KEY (a, b));
CREATE TABLE big_raw (a int, b text, n bigint, PRIMARY KEY (a, b));
CREATE TABLE big_input AS
SELECT (g * 7919) % 5000 AS a, 'k' || (g % 3) AS b, (g % 5) - 1 AS d
FROM generate_series(1, 50000) g;
INSERT INTO big_ours SELECT a, b, 1 FROM big_input WHERE a < 2500 GROUP BY a, b;
INSERT INTO big_raw SELECT a, b, 1 FROM big_input WHERE a < 2500 GROUP BY a, b;
SELECT upsert_increment('big_ours', jsonb_build_object('a', a, 'b', b), jsonb_build_object('n', d))
FROM big_input;
INSERT INTO big_raw AS t (a, b, n)
SELECT a, b, sum(d) FROM big_input GROUP BY a, b
ON CONFLICT (a, b) DO UPDATE SET n = t.n + EXCLUDED.n;
SELECT count(*) AS rows, sum(n) AS total FROM big_ours;
(SELECT * FROM big_ours EXCEPT SELECT * FROM big_raw)
UNION ALL
(SELECT * FROM big_raw EXCEPT SELECT * FROM big_ours);

-- A NULLS NOT DISTINCT arbiter merges NULL keys like any other value.
CREATE TABLE nnd (a int, b int, n int, UNIQUE NULLS NOT DISTINCT (a, b));
SELECT upsert_increment('nnd', jsonb_build_object('a', 1, 'b', CASE WHEN g % 2 = 0 THEN NULL ELSE 1 END), '{"n": 1}')
FROM generate_series(1, 6) g;
SELECT upsert_increment('nnd', '{"a": 1, "b": null}', '{"n": 1}');
SELECT * FROM nnd ORDER BY a, b;

-- A DESC, case-insensitive-collated key: equality is the index's own.
CREATE COLLATION IF NOT EXISTS ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE ci_keys (k text COLLATE ci, n int);
CREATE UNIQUE INDEX ci_keys_k ON ci_keys (k DESC);
SELECT upsert_increment('ci_keys', jsonb_build_object('k', w), '{"n": 1}')
FROM unnest(ARRAY['Apple', 'apple', 'APPLE', 'pear', 'Pear']) w;
SELECT k, n FROM ci_keys ORDER BY n;

-- It is not a window function (PostgreSQL refuses READ_WRITE final functions there).
SELECT upsert_increment('counts', '{"k1": 1, "k2": "a"}', '{"n": 1}') OVER ()
FROM generate_series(1, 2);
\echo :LAST_ERROR_SQLSTATE
-- Errors in any row abort the whole batch: nothing is written.
SELECT upsert_increment('chunked', jsonb_build_object('k', g), jsonb_build_object('n', CASE WHEN g = 1500 THEN '"x"'::jsonb ELSE '1' END))
FROM generate_series(1000, 1999) g;
SELECT count(*) FROM chunked WHERE k >= 1000;
-- ... also when the failure comes in a later chunk, after earlier chunks
-- were written: the statement is one unit.
CREATE TABLE capped (k int PRIMARY KEY, n int CHECK (n < 100));
SET upsert_counter.batch_size = 10;
SELECT upsert_increment('capped', jsonb_build_object('k', g), jsonb_build_object('n', CASE WHEN g = 45 THEN 200 ELSE 1 END))
FROM generate_series(1, 50) g;
\echo :LAST_ERROR_SQLSTATE
RESET upsert_counter.batch_size;
SELECT count(*) FROM capped;
