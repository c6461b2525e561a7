-- ours over the extended protocol: JSON text built from the parameters, as
-- a driver that prepares statements (psycopg 3, JDBC) would send it
\set t random(1, :ntests)
\set h random(0, :nhours - 1)
SELECT upsert_increment('ab_hourly', format('{"ab_test_id": %s, "version": "control", "date": "2026-11-22", "hour": %s}', :t::int, :h::int)::jsonb, '{"participants": 1}');
