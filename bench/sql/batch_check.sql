-- exact: every key's count equals the input's sum for it
SELECT count(*) AS mismatches FROM (
    SELECT ab_test_id, version, date, hour, sum(participants) AS s
    FROM batch_input GROUP BY 1, 2, 3, 4) i
FULL JOIN batch_target t USING (ab_test_id, version, date, hour)
WHERE t.participants IS DISTINCT FROM i.s;
