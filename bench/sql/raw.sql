-- what wagtail-ab-testing runs today
\set t random(1, :ntests)
\set h random(0, :nhours - 1)
INSERT INTO ab_hourly AS t (ab_test_id, version, date, hour, participants) VALUES (:t, 'control', '2026-11-22', :h, 1) ON CONFLICT (ab_test_id, version, date, hour) DO UPDATE SET participants = t.participants + EXCLUDED.participants;
