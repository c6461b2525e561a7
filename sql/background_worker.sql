--
-- background_worker: the fold worker of this database, for real.  It runs
-- its statements on the log as the log's owner (a superuser here), so no
-- name in them may resolve through the database's search_path: here a
-- database owner's search_path puts a domain named float8, whose check
-- records who evaluates it, before pg_catalog.  A target whose fold fails
-- makes the worker evaluate its back-off (a float8 cast) every round.
--
-- (no worker of an earlier test, started with other settings, may run)
DO $$
BEGIN
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE backend_type = 'upsert_counter fold' AND datname = current_database();
    FOR i IN 1..300 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity
                              WHERE backend_type = 'upsert_counter fold'
                              AND datname = current_database());
        PERFORM pg_sleep(0.1);
    END LOOP;
END$$;
CREATE SCHEMA bgw_evil;
CREATE TABLE bgw_evaluated_by (who name, super bool);
GRANT INSERT ON bgw_evaluated_by TO PUBLIC;
CREATE FUNCTION bgw_evil.seen(float8) RETURNS bool LANGUAGE plpgsql AS
$$BEGIN
    INSERT INTO public.bgw_evaluated_by
    SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
    RETURN true;
END$$;
CREATE DOMAIN bgw_evil.float8 AS pg_catalog.float8 CHECK (bgw_evil.seen(VALUE));
SELECT current_database() AS db \gset
ALTER DATABASE :"db" SET search_path = bgw_evil, public, pg_catalog;

-- a target whose fold fails (the merged row violates its CHECK), and one
-- that folds
CREATE TABLE bgw_fails (k int PRIMARY KEY, n int NOT NULL DEFAULT 0 CHECK (n < 0));
CREATE TABLE bgw_folds (k int PRIMARY KEY, n int NOT NULL DEFAULT 0);
SET upsert_counter.flush = background;
SET upsert_counter.fold_worker = on;
SELECT upsert_increment('bgw_fails', '{"k": 1}', '{"n": 1}');
SELECT upsert_increment('bgw_folds', '{"k": 1}', '{"n": 1}');
RESET upsert_counter.flush;

-- the worker folds one, and fails the other round after round (its
-- back-off doubles from 2 s): wait for a second failure, at most 60 s
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT failures FROM upsert_counter_fold_status
                   WHERE target = 'bgw_fails'::regclass) >= 2
              AND (SELECT n FROM bgw_folds WHERE k = 1) = 1;
        PERFORM pg_sleep(0.1);
    END LOOP;
END$$;
SELECT (SELECT n FROM bgw_folds WHERE k = 1) AS folded,
       (SELECT failures >= 2 FROM upsert_counter_fold_status
        WHERE target = 'bgw_fails'::regclass) AS failed_twice,
       (SELECT last_sqlstate FROM upsert_counter_fold_status
        WHERE target = 'bgw_fails'::regclass) AS sqlstate;
-- nothing of the search_path was evaluated, by the worker or anyone
SELECT count(*) AS evaluations FROM bgw_evaluated_by;

ALTER DATABASE :"db" RESET search_path;
SET upsert_counter.fold_worker = off;
SELECT upsert_counter_discard('bgw_fails');
DROP TABLE bgw_fails, bgw_folds, bgw_evaluated_by;
DROP SCHEMA bgw_evil CASCADE;
TRUNCATE upsert_counter_fold_status;
-- the worker would stay up to upsert_counter.fold_idle_exit and keep the
-- database from being dropped: stop it
DO $$
BEGIN
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE backend_type = 'upsert_counter fold' AND datname = current_database();
    FOR i IN 1..300 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity
                              WHERE backend_type = 'upsert_counter fold'
                              AND datname = current_database());
        PERFORM pg_sleep(0.1);
    END LOOP;
END$$;
SELECT count(*) AS workers FROM pg_stat_activity
WHERE backend_type = 'upsert_counter fold' AND datname = current_database();
