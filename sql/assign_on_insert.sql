--
-- assign_on_insert: values written on every call, or only on creation
--
CREATE TABLE sessions (
    user_id int PRIMARY KEY,
    hits int NOT NULL DEFAULT 0,
    last_path text,
    first_path text,
    created_by text DEFAULT 'default',
    untouched text DEFAULT 'd'
);

-- Insert path: keys, deltas, assign and on_insert all go in; unnamed
-- columns get their defaults.
SELECT upsert_increment('sessions', '{"user_id": 1}', '{"hits": 1}',
                        '{"last_path": "/a"}', '{"first_path": "/a", "created_by": "upsert"}');
SELECT * FROM sessions;
-- Update path: assign is written, on_insert is not, unnamed columns keep
-- their values.
UPDATE sessions SET untouched = 'kept';
SELECT upsert_increment('sessions', '{"user_id": 1}', '{"hits": 1}',
                        '{"last_path": "/b"}', '{"first_path": "/b", "created_by": "again"}');
SELECT * FROM sessions;

-- A NULL assign or on_insert argument means the role is not used.
SELECT upsert_increment('sessions', '{"user_id": 1}', '{"hits": 1}', NULL, NULL);
SELECT upsert_increment('sessions', '{"user_id": 2}', '{"hits": 1}', NULL, '{"first_path": "/x"}');
SELECT * FROM sessions ORDER BY user_id;

-- assign alone, without deltas
SELECT upsert_increment('sessions', '{"user_id": 2}', '{}', '{"last_path": "/y"}');
SELECT user_id, hits, last_path, first_path FROM sessions WHERE user_id = 2;

-- on_insert alone: get-or-create with initial values
SELECT upsert_increment('sessions', '{"user_id": 3}', '{}', NULL, '{"first_path": "/z", "hits": 7}');
SELECT upsert_increment('sessions', '{"user_id": 3}', '{}', NULL, '{"first_path": "/zz", "hits": 8}');
SELECT user_id, hits, last_path, first_path FROM sessions WHERE user_id = 3;

-- Assigning NULL writes NULL.
SELECT upsert_increment('sessions', '{"user_id": 1}', '{}', '{"last_path": null}');
SELECT user_id, last_path FROM sessions WHERE user_id = 1;

-- upsert_increment_returning() with named arguments
SELECT inserted, new_row->>'last_path' AS last_path, new_row->>'first_path' AS first_path
FROM upsert_increment_returning('sessions', '{"user_id": 4}', '{"hits": 1}',
                                on_insert => '{"first_path": "/p"}');
SELECT inserted, new_row->>'last_path' AS last_path, new_row->>'first_path' AS first_path,
       new_row->'hits' AS hits
FROM upsert_increment_returning(target => 'sessions', keys => '{"user_id": 4}',
                                deltas => '{"hits": 2}', assign => '{"last_path": "/q"}',
                                on_insert => '{"first_path": "/never"}');
