#!/usr/bin/env bash
# make stress: the long reliability run.  Minutes: a 30,000-call fuzz, the
# differential test for STRESS_DIFF_DURATION seconds (default 120; a random
# seed, printed, unless STRESS_DIFF_SEED is set), then
# load with an invariant in the three flush modes under every fault
# (backends and background mode's fold worker terminated, canceled and
# SIGKILLed, the server stopped with -m immediate and restarted, DDL), then a 5,000,000-row batch over 100,000 keys with
# its peak memory.  STRESS_DURATION sets each load run's seconds (default 60).
source "$(dirname "$0")/pgenv.sh"

DURATION=${STRESS_DURATION:-60}
uc_ensure_packages psycopg2
uc_build_install
uc_start_cluster 'wal_level = logical'
uc_as_postgres createdb reliability
export PGDATABASE=reliability
# the postgres OS user may not be able to read the checkout: stage the tests
cp -r "$UC_REPO/tests" "$UC_CLUSTER/tests"
chown -R postgres: "$UC_CLUSTER/tests"
status=0
run() { uc_run uc_as_postgres env PGDATABASE=reliability UC_PGDATA="$UC_CLUSTER/data" UC_PGBIN="$UC_PGBIN" "$@" || status=1; }

run /usr/bin/python3 "$UC_CLUSTER/tests/fuzz.py" --calls 30000 --seed "${STRESS_SEED:-20261122}"
uc_as_postgres createdb differential
run env PGDATABASE=differential /usr/bin/python3 "$UC_CLUSTER/tests/differential.py" --long \
	--duration "${STRESS_DIFF_DURATION:-120}" ${STRESS_DIFF_SEED:+--seed "$STRESS_DIFF_SEED"}
for flush in statement commit background; do
	run /usr/bin/python3 "$UC_CLUSTER/tests/stress.py" --duration "$DURATION" --clients 32 \
		--flush "$flush" --kill --restart
done

uc_log "memory: 5,000,000 input rows over 100,000 keys"
uc_as_postgres psql -X -q -d reliability -c "CREATE TABLE mem (k int PRIMARY KEY, n bigint)"
PGAPPNAME=uc_memory uc_as_postgres psql -X -q -At -d reliability \
	-c "SELECT upsert_increment('mem', jsonb_build_object('k', g % 100000), '{\"n\": 1}') FROM generate_series(1, 5000000) g" \
	-c "SELECT 'memory contexts after the batch: ' || pg_size_pretty(sum(total_bytes)) FROM pg_backend_memory_contexts" \
	-c "SELECT pg_sleep(3)" &
pid=
for _ in $(seq 1 3000); do
	pid=$(uc_as_postgres psql -X -At -d reliability -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'uc_memory' AND wait_event = 'PgSleep'")
	[ -n "$pid" ] && break
	sleep 0.2
done
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo "?")
wait
echo "peak RSS of the backend (VmHWM): $hwm kB"
uc_as_postgres psql -X -At -d reliability -c "SELECT 'rows ' || count(*) || ', total ' || sum(n) FROM mem"

if grep -E 'PANIC|TRAP:' "$UC_CLUSTER/server.log"; then
	echo "the server log shows a PANIC or an assertion failure" >&2
	status=1
fi
echo "crashes in the server log (SIGKILLs injected on purpose show as 'terminated by signal 9'):"
grep -E 'terminated by signal' "$UC_CLUSTER/server.log" | grep -v 'signal 9' && status=1
exit $status
