--
-- hostile: names that look like SQL never run as SQL, and objects planted
-- in the caller's search_path are never used by the generated statements
--
CREATE TABLE victim (id int);
CREATE TABLE "evil""; DROP TABLE victim; --" (
    "x""); DROP TABLE victim; --" int PRIMARY KEY,
    "select" int DEFAULT 0,
    "from" text,
    "$1" int DEFAULT 0
);
SELECT upsert_increment('"evil""; DROP TABLE victim; --"',
                        '{"x\"); DROP TABLE victim; --": 1}',
                        '{"select": 1, "$1": 2}', '{"from": "'' OR 1=1; --"}');
SELECT upsert_increment('"evil""; DROP TABLE victim; --"',
                        jsonb_build_object('x"); DROP TABLE victim; --', g), '{"select": 1}')
FROM generate_series(1, 2) g;
SELECT * FROM upsert_increment_returning('"evil""; DROP TABLE victim; --"',
                                         '{"x\"); DROP TABLE victim; --": 1}', '{}');
SELECT * FROM "evil""; DROP TABLE victim; --" ORDER BY 1;
SELECT count(*) AS victim_still_there FROM victim;

-- Operators and functions planted in a schema searched before pg_catalog:
-- an unqualified + or = in the generated SQL would call them.
CREATE SCHEMA planted;
CREATE FUNCTION planted.evil_int(int, int) RETURNS int LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'planted operator called'; END $$;
CREATE OPERATOR planted.+ (LEFTARG = int, RIGHTARG = int, FUNCTION = planted.evil_int);
CREATE FUNCTION planted.evil_bool(int, int) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'planted operator called'; END $$;
CREATE OPERATOR planted.= (LEFTARG = int, RIGHTARG = int, FUNCTION = planted.evil_bool);
CREATE FUNCTION planted.upsert_counter_note_update(int) RETURNS int LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'planted function called'; END $$;
CREATE FUNCTION planted.unnest(int[]) RETURNS SETOF int LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'planted function called'; END $$;
CREATE FUNCTION planted.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'planted function called'; END $$;
CREATE TABLE pc (k int PRIMARY KEY, n int DEFAULT 0);
-- the unqualified operator really would be the planted one
SET search_path = planted, pg_catalog, public;
SELECT 1 + 1;
-- ours is not: single row, batch, returning, get-or-create (the lookup)
SELECT upsert_increment('public.pc', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('public.pc', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('public.pc', jsonb_build_object('k', g), '{"n": 1}') FROM generate_series(1, 3) g;
SELECT * FROM upsert_increment_returning('public.pc', '{"k": 1}', '{"n": 1}');
SELECT * FROM upsert_increment_returning('public.pc', '{"k": 1}', '{}');
RESET search_path;
SELECT * FROM pc ORDER BY k;

-- A same-named table planted earlier in the path after the plan was cached
-- is never written by a call that names the original.
CREATE TABLE orig (k int PRIMARY KEY, n int);
SELECT upsert_increment('public.orig', '{"k": 1}', '{"n": 1}');
CREATE TABLE planted.orig (k int PRIMARY KEY, n int);
SET search_path = planted, public;
SELECT upsert_increment('public.orig', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('public.orig'::regclass::oid::regclass, '{"k": 1}', '{"n": 1}');
RESET search_path;
SELECT 'public' AS schema, * FROM public.orig UNION ALL SELECT 'planted', * FROM planted.orig;

-- Function privileges: callers run with their own rights, so EXECUTE is left
-- to PUBLIC (the default) and nothing is SECURITY DEFINER.
SELECT p.proname, p.prosecdef, p.proacl IS NULL AS default_acl
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'upsert_counter'
WHERE p.prosecdef OR p.proacl IS NOT NULL;
