-- a request that upserts early in a longer transaction (Django's
-- ATOMIC_REQUESTS): the counter, then 5 ms of other work, then commit
\set t random(1, :ntests)
BEGIN;
SELECT upsert_increment('ab_hourly', '{"ab_test_id": :t, "version": "control", "date": "2026-11-22", "hour": 0}', '{"participants": 1}');
SELECT pg_sleep(0.005);
COMMIT;
