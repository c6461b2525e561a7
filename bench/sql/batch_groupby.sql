INSERT INTO batch_target AS t (ab_test_id, version, date, hour, participants)
SELECT ab_test_id, version, date, hour, sum(participants) FROM batch_input
GROUP BY ab_test_id, version, date, hour
ON CONFLICT (ab_test_id, version, date, hour)
DO UPDATE SET participants = t.participants + EXCLUDED.participants;
