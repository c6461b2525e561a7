-- the same request with the hand-written statement
\set t random(1, :ntests)
BEGIN;
INSERT INTO ab_hourly AS t (ab_test_id, version, date, hour, participants) VALUES (:t, 'control', '2026-11-22', 0, 1) ON CONFLICT (ab_test_id, version, date, hour) DO UPDATE SET participants = t.participants + EXCLUDED.participants;
SELECT pg_sleep(0.005);
COMMIT;
