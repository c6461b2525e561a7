--
-- partitioned: a partitioned table is a target like any other
--
CREATE TABLE daily (day date, page text, views int DEFAULT 0, PRIMARY KEY (day, page))
PARTITION BY RANGE (day);
CREATE TABLE daily_nov PARTITION OF daily FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE daily_dec PARTITION OF daily FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');

SELECT upsert_increment('daily', '{"day": "2026-11-30", "page": "/"}', '{"views": 1}');
SELECT upsert_increment('daily', '{"day": "2026-11-30", "page": "/"}', '{"views": 1}');
SELECT * FROM upsert_increment_returning('daily', '{"day": "2026-12-01", "page": "/"}', '{"views": 5}');
SELECT * FROM upsert_increment_returning('daily', '{"day": "2026-12-01", "page": "/"}', '{}');

-- a batch across partitions
SELECT upsert_increment('daily', jsonb_build_object('day', '2026-11-25'::date + (g % 10), 'page', '/'), '{"views": 1}')
FROM generate_series(1, 100) g;
SELECT tableoid::regclass AS partition, day, page, views FROM daily ORDER BY day;

-- a row outside every partition is PostgreSQL's own error
SELECT upsert_increment('daily', '{"day": "2027-06-01", "page": "/"}', '{"views": 1}');
\echo :LAST_ERROR_SQLSTATE

-- a partition can be the target too
SELECT upsert_increment('daily_nov', '{"day": "2026-11-30", "page": "/"}', '{"views": 100}');
SELECT day, views FROM daily WHERE day = '2026-11-30';

-- a unique index on the parent that every partition inherits
CREATE TABLE events (tenant int, id int, n int) PARTITION BY LIST (tenant);
CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);
CREATE TABLE events_2 PARTITION OF events FOR VALUES IN (2);
CREATE UNIQUE INDEX events_key ON events (tenant, id);
SELECT upsert_increment('events', jsonb_build_object('tenant', 1 + g % 2, 'id', g % 3), '{"n": 1}')
FROM generate_series(1, 12) g;
SELECT tableoid::regclass AS partition, * FROM events ORDER BY tenant, id;
