--
-- plpgsql: calling it from PL/pgSQL
--
CREATE TABLE pv (page text PRIMARY KEY, views bigint NOT NULL DEFAULT 0, last_seen timestamptz);

CREATE FUNCTION record_view(p text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM upsert_increment('pv', jsonb_build_object('page', p), '{"views": 1}',
                             jsonb_build_object('last_seen', '2026-11-22 13:00:00+00'));
END
$$;
SELECT record_view('/a') FROM generate_series(1, 3);
SELECT record_view('/b');
SELECT page, views, last_seen IS NOT NULL AS seen FROM pv ORDER BY page;

-- a loop, and a result read into a variable
DO $$
DECLARE
    r jsonb;
    total_inserted int := 0;
BEGIN
    FOR i IN 1..20 LOOP
        r := upsert_increment('pv', jsonb_build_object('page', '/loop' || (i % 4)), '{"views": 1}');
        total_inserted := total_inserted + (r->>'inserted')::int;
    END LOOP;
    RAISE NOTICE 'inserted % rows', total_inserted;
END
$$;
SELECT page, views FROM pv WHERE page LIKE '/loop%' ORDER BY page;

-- upsert_increment_returning() in PL/pgSQL
DO $$
DECLARE
    created boolean;
    row_now jsonb;
BEGIN
    SELECT inserted, new_row INTO created, row_now
    FROM upsert_increment_returning('pv', '{"page": "/ret"}', '{"views": 2}');
    RAISE NOTICE 'created %, views %', created, row_now->'views';
    SELECT inserted, new_row INTO created, row_now
    FROM upsert_increment_returning('pv', '{"page": "/ret"}', '{"views": 2}');
    RAISE NOTICE 'created %, views %', created, row_now->'views';
END
$$;

-- An error caught in an exception block rolls back that call only, and
-- the backend goes on using its cache.
DO $$
BEGIN
    PERFORM upsert_increment('pv', '{"page": "/x"}', '{"views": 1}');
    BEGIN
        PERFORM upsert_increment('pv', '{"page": "/x"}', '{"views": 1}');
        PERFORM upsert_increment('pv', '{"page": "/x"}', '{"views": "oops"}');
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE NOTICE 'caught: %', SQLERRM;
    END;
    PERFORM upsert_increment('pv', '{"page": "/x"}', '{"views": 1}');
END
$$;
SELECT page, views FROM pv WHERE page = '/x';

-- ... also in the middle of a batch
DO $$
BEGIN
    BEGIN
        PERFORM upsert_increment('pv', jsonb_build_object('page', '/y' || g),
                                 CASE WHEN g = 3 THEN '{"views": null}'::jsonb ELSE '{"views": 1}' END)
        FROM generate_series(1, 5) g;
    EXCEPTION WHEN null_value_not_allowed THEN
        RAISE NOTICE 'caught: %', SQLERRM;
    END;
    PERFORM upsert_increment('pv', jsonb_build_object('page', '/y' || g), '{"views": 1}')
    FROM generate_series(1, 5) g;
END
$$;
SELECT page, views FROM pv WHERE page LIKE '/y%' ORDER BY page;

-- A trigger on the target may itself call upsert_increment(), on the same
-- table and shape, while the outer plan is running.
CREATE TABLE daily_total (day date PRIMARY KEY, views bigint DEFAULT 0);
CREATE FUNCTION pv_total() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM upsert_increment('daily_total', '{"day": "2026-11-22"}', '{"views": 1}');
    IF NEW.page <> '/total' THEN
        PERFORM upsert_increment('pv', '{"page": "/total"}', '{"views": 1}');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER pv_total BEFORE INSERT OR UPDATE ON pv FOR EACH ROW EXECUTE FUNCTION pv_total();
SELECT upsert_increment('pv', '{"page": "/a"}', '{"views": 1}');
SELECT upsert_increment('pv', jsonb_build_object('page', '/b'), '{"views": 1}') FROM generate_series(1, 2);
SELECT page, views FROM pv WHERE page IN ('/a', '/b', '/total') ORDER BY page;
SELECT * FROM daily_total;
