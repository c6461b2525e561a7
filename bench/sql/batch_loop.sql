DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM batch_input LOOP
        INSERT INTO batch_target AS t (ab_test_id, version, date, hour, participants)
        VALUES (r.ab_test_id, r.version, r.date, r.hour, r.participants)
        ON CONFLICT (ab_test_id, version, date, hour)
        DO UPDATE SET participants = t.participants + EXCLUDED.participants;
    END LOOP;
END
$$;
