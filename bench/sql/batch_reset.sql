TRUNCATE batch_target;
INSERT INTO batch_target (ab_test_id, version, date, hour, participants)
SELECT DISTINCT ab_test_id, version, date, hour, 0 FROM batch_input WHERE ab_test_id % 2 = 0;
VACUUM ANALYZE batch_target;
CHECKPOINT;
