INSERT INTO batch_target AS t (ab_test_id, version, date, hour, participants)
SELECT ab_test_id, version, date, hour, participants FROM batch_input
ON CONFLICT (ab_test_id, version, date, hour)
DO UPDATE SET participants = t.participants + EXCLUDED.participants;
