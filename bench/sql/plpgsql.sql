-- a PL/pgSQL function wrapping the raw statement (its plan is cached too)
\set t random(1, :ntests)
\set h random(0, :nhours - 1)
SELECT bench_plpgsql_upsert(:t, 'control', '2026-11-22', :h, 1);
