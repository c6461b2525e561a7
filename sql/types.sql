--
-- types: JSON values become column values by each type's own rules
--
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE >= 0);
CREATE TABLE typed (
    k_date date,
    k_ts timestamptz,
    k_uuid uuid,
    k_mood mood,
    k_bool boolean,
    k_num numeric,
    d_small smallint DEFAULT 0,
    d_int integer DEFAULT 0,
    d_big bigint DEFAULT 0,
    d_num numeric(10,2) DEFAULT 0,
    d_real real DEFAULT 0,
    d_double double precision DEFAULT 0,
    d_dom posint DEFAULT 0,
    a_json jsonb,
    a_arr int[],
    a_short varchar(3),
    a_int int,
    UNIQUE (k_date, k_ts, k_uuid, k_mood, k_bool, k_num)
);
SET timezone = 'UTC';

SELECT upsert_increment('typed',
    '{"k_date": "2026-11-22", "k_ts": "2026-11-22 13:00:00+01", "k_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      "k_mood": "happy", "k_bool": true, "k_num": 1.50}',
    '{"d_small": 1, "d_int": 2, "d_big": 3, "d_num": 0.25, "d_real": 0.5, "d_double": 1e-3, "d_dom": 4}',
    '{"a_json": {"nested": [1, 2, {"x": null}]}, "a_arr": "{1,2,3}", "a_short": "abc", "a_int": "42"}');
-- The same key written differently is the same key: the types compare,
-- not the JSON text (1.5 = 1.50, another time zone, upper-case uuid).
SELECT upsert_increment('typed',
    '{"k_date": "2026-11-22", "k_ts": "2026-11-22T12:00:00Z", "k_uuid": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
      "k_mood": "happy", "k_bool": "true", "k_num": 1.5}',
    '{"d_small": 1, "d_int": 2, "d_big": 3, "d_num": 0.25, "d_real": 0.5, "d_double": 1e-3, "d_dom": 4}',
    '{"a_json": "a JSON string", "a_int": 7}');
SELECT k_date, k_ts, k_uuid, k_mood, k_bool, k_num, d_small, d_int, d_big, d_num,
       d_real, d_double, d_dom, a_json, a_arr, a_short, a_int
FROM typed;

-- Big integers survive exactly.
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_big": 9223372036854775806}');
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_big": 1}');
SELECT d_big FROM typed WHERE k_mood = 'ok';

-- Overflow is the type's own error, never a wrap.
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_big": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_small": 40000}');
\echo :LAST_ERROR_SQLSTATE
-- ... also when a batch sums its deltas
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_small": 20000}')
FROM generate_series(1, 2);
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_double": 1e308}')
FROM generate_series(1, 2);
\echo :LAST_ERROR_SQLSTATE

-- A fraction into an integer column is the integer type's input error, not
-- a silent rounding.
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_int": 1.5}');
\echo :LAST_ERROR_SQLSTATE
-- numeric(10,2) rounds each delta as the column type does.
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_num": 0.125}');
SELECT d_num FROM typed WHERE k_mood = 'ok';
-- A domain's constraint holds.
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}',
                        '{"d_dom": -1}');
\echo :LAST_ERROR_SQLSTATE
-- Values that do not convert raise the type's own error.
SELECT upsert_increment('typed', '{"k_date": "2026-02-30", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "not-a-uuid", "k_mood": "ok", "k_bool": false, "k_num": 0}', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "furious", "k_bool": false, "k_num": 0}', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}', '{}', '{"a_short": "abcd"}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": false, "k_num": 0}', '{}', '{"a_int": [1]}');
\echo :LAST_ERROR_SQLSTATE
SELECT upsert_increment('typed', '{"k_date": "2026-01-01", "k_ts": "2026-01-01", "k_uuid": "00000000-0000-0000-0000-000000000000", "k_mood": "ok", "k_bool": 5, "k_num": 0}', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM typed;
