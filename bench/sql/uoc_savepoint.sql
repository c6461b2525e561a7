-- update_or_create inside the savepoint Django adds for a nested atomic()
\set t random(1, :ntests)
\set h random(0, :nhours - 1)
BEGIN;
SAVEPOINT s1;
SELECT coalesce(max(id), 0) AS id, coalesce(max(participants), 0) AS p FROM (SELECT id, participants FROM ab_hourly WHERE ab_test_id = :t AND version = 'control' AND date = '2026-11-22' AND hour = :h FOR UPDATE) s \gset
\if :id = 0
INSERT INTO ab_hourly (ab_test_id, version, date, hour, participants) VALUES (:t, 'control', '2026-11-22', :h, 1);
\else
UPDATE ab_hourly SET ab_test_id = :t, version = 'control', date = '2026-11-22', hour = :h, participants = :p + 1, conversions = conversions WHERE id = :id;
\endif
RELEASE SAVEPOINT s1;
COMMIT;
