-- ours over the extended protocol: the JSON built from parameters
\set t random(1, :ntests)
\set h random(0, :nhours - 1)
SELECT upsert_increment('ab_hourly', jsonb_build_object('ab_test_id', :t::int, 'version', 'control', 'date', '2026-11-22', 'hour', :h::int), '{"participants": 1}');
