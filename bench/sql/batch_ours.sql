SELECT upsert_increment('batch_target',
       jsonb_build_object('ab_test_id', ab_test_id, 'version', version, 'date', date, 'hour', hour),
       jsonb_build_object('participants', participants))
FROM batch_input;
