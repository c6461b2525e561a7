SELECT upsert_increment_rows('batch_target', e, '{participants}')
FROM (SELECT ab_test_id, version, date, hour, participants FROM batch_input) e;
