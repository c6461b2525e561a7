-- ours, as Django with psycopg2 sends it: JSON interpolated into the text
\set t random(1, :ntests)
\set h random(0, :nhours - 1)
SELECT upsert_increment('ab_hourly', '{"ab_test_id": :t, "version": "control", "date": "2026-11-22", "hour": :h}', '{"participants": 1}');
