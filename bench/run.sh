#!/usr/bin/env bash
# make bench: pgbench-driven benchmarks of upsert_counter against the plain-SQL
# alternatives, measured in the same run on a throwaway cluster.
#
# Environment: BENCH_DURATION (seconds per pgbench run, default 8),
# BENCH_CLIENTS (default "1 8 32"), BENCH_SYNC (default "off on"),
# BENCH_SKIP_BATCH=1 to skip the batch part.
#
# Writes bench/results/<date>.md and bench/results/latest.md; exits non-zero
# if any run's final counts are not exact.
source "$(dirname "$0")/../scripts/pgenv.sh"

DURATION=${BENCH_DURATION:-8}
CLIENTS=${BENCH_CLIENTS:-"1 8 32"}
SYNCS=${BENCH_SYNC:-"off on"}
SQL=$UC_REPO/bench/sql
OUT=$UC_REPO/bench/results
mkdir -p "$OUT"
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
report=$OUT/$stamp.md
work=$(mktemp -d /tmp/upsert_counter_bench.XXXXXX)
chmod 755 "$work"
cp "$SQL"/*.sql "$work"/
chmod 644 "$work"/*.sql
failures=0

uc_ensure_packages
uc_build_install
SETTINGS=("shared_buffers = '512MB'" "max_connections = 100" "max_wal_size = '4GB'"
	"checkpoint_timeout = '30min'" "work_mem = '64MB'")
uc_start_cluster "${SETTINGS[@]}"
uc_as_postgres createdb bench
export PGDATABASE=bench
psql_b() { uc_as_postgres psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
psql_b -f "$work/setup.sql" >/dev/null

total() { psql_b -Atc "SELECT sum(participants) FROM ab_hourly"; }

declare -A TPS

# run_pgbench NAME SCRIPT MODE CLIENTS KEYSET SYNC
run_pgbench() {
	local name=$1 script=$2 mode=$3 clients=$4 keyset=$5 sync=$6
	local ntests nhours before after out tps processed
	if [ "$keyset" = hot ]; then ntests=2; nhours=2; else ntests=10000; nhours=24; fi
	psql_b -c "VACUUM ab_hourly" >/dev/null
	before=$(total)
	out=$(PGOPTIONS="-c synchronous_commit=$sync" uc_as_postgres pgbench -n -M "$mode" \
		-c "$clients" -j "$(( clients < 2 ? clients : 2 ))" -T "$DURATION" \
		-D ntests=$ntests -D nhours=$nhours -f "$work/$script" bench 2>&1) || {
		echo "$out" >&2
		echo "pgbench failed for $name" >&2
		failures=$((failures + 1))
		TPS[$sync,$clients,$keyset,$name]=0
		return
	}
	after=$(total)
	tps=$(printf '%s\n' "$out" | awk '/^tps = / { printf "%.0f", $3 }')
	processed=$(printf '%s\n' "$out" | awk '/number of transactions actually processed/ { print $NF }')
	if [ "$((after - before))" -ne "$processed" ]; then
		echo "COUNT MISMATCH in $name ($sync, $clients clients, $keyset): +$((after - before)) for $processed transactions" >&2
		failures=$((failures + 1))
	fi
	TPS[$sync,$clients,$keyset,$name]=$tps
	printf '  %-15s %-8s %2s clients %-6s %8s tps  (+%s counted for %s transactions)\n' \
		"$name" "$mode" "$clients" "$keyset" "$tps" "$((after - before))" "$processed" >&2
}

WORKLOADS=(
	"ours_simple ours_simple.sql simple"
	"ours_prepared ours_prepared.sql prepared"
	"raw_simple raw.sql simple"
	"raw_prepared raw_prepared.sql prepared"
	"plpgsql plpgsql.sql simple"
	"uoc uoc.sql simple"
	"uoc_savepoint uoc_savepoint.sql simple"
)

uc_log "single-row workloads, $DURATION s each"
for sync in $SYNCS; do
	for clients in $CLIENTS; do
		for keyset in spread hot; do
			for w in "${WORKLOADS[@]}"; do
				set -- $w
				run_pgbench "$1" "$2" "$3" "$clients" "$keyset" "$sync"
			done
		done
	done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# batch: time one statement, on a target reset to half full
declare -A BATCH_S BATCH_RESULT
run_batch() {
	local name=$1 file=$2 t0 t1 out
	psql_b -f "$work/batch_reset.sql" >/dev/null
	t0=$(date +%s.%N)
	if out=$(psql_b -f "$work/$file" 2>&1); then
		t1=$(date +%s.%N)
		BATCH_S[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
		local mism
		mism=$(psql_b -Atf "$work/batch_check.sql")
		BATCH_RESULT[$name]="$mism mismatches"
		[ "$mism" = 0 ] || { echo "COUNT MISMATCH in batch $name: $mism keys" >&2; failures=$((failures + 1)); }
	else
		BATCH_S[$name]=""
		BATCH_RESULT[$name]="fails: $(printf '%s\n' "$out" | grep -m1 ERROR | sed 's/.*ERROR: *//')"
	fi
	uc_log "batch $name: ${BATCH_S[$name]:-–} s, ${BATCH_RESULT[$name]}"
}

# peak memory of the backend running our batch, from /proc (VmHWM), for the
# full input (250,000 keys) and for the same rows over 25,000 keys
batch_memory() {
	local keys=$1
	psql_b -f "$work/batch_reset.sql" >/dev/null
	uc_as_postgres psql -X -q -d bench -v ON_ERROR_STOP=1 <<SQL 2>&1 | awk '/VmHWM/ { print $2 }' | tail -1
SELECT pg_backend_pid() AS pid \gset
SELECT upsert_increment('batch_target',
       jsonb_build_object('ab_test_id', ab_test_id % $keys / 24 + 1, 'version', version, 'date', date, 'hour', hour),
       jsonb_build_object('participants', participants))
FROM batch_input \g /dev/null
\! grep VmHWM /proc/:pid/status
SQL
}

if [ -z "${BENCH_SKIP_BATCH:-}" ]; then
	uc_log "batch: 1,000,000 rows over 250,000 keys into a half-full table"
	psql_b -f "$work/batch_setup.sql" >/dev/null
	run_batch ours batch_ours.sql
	run_batch groupby batch_groupby.sql
	run_batch nogroup batch_nogroup.sql
	run_batch loop batch_loop.sql
	MEM_250K=$(batch_memory 250000)
	MEM_25K=$(batch_memory 25000)
	MEM_BASE=$(printf '%s\n' 'SELECT pg_backend_pid() AS pid \gset' '\! grep VmHWM /proc/:pid/status' |
		uc_as_postgres psql -X -q -d bench | awk '/VmHWM/ { print $2 }')
fi

# ---- report ----
{
	echo "# upsert_counter benchmark, $stamp"
	echo
	echo "Command: \`make bench\` (BENCH_DURATION=$DURATION, clients: $CLIENTS)."
	echo
	echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)."
	echo "Server: $("$UC_PGBIN/postgres" --version), fsync off, $(printf '%s, ' "${SETTINGS[@]}" | sed 's/, $//')."
	echo "Client: pgbench on the same machine over a unix socket, -j min(clients, 2), $DURATION s per run."
	echo "Table: the wagtail-ab-testing hourly log, UNIQUE (ab_test_id, version, date, hour), pre-filled with the 240,000 keys (every call takes the update path)."
	echo "Keys: spread = 240,000 keys at random; hot = 4 keys."
	echo "Every run checks that the counters grew by exactly the number of transactions pgbench completed."
	echo
	for sync in $SYNCS; do
		echo "## synchronous_commit = $sync"
		echo
		echo "| clients | keys | ours simple | ours prepared | raw simple | raw prepared | PL/pgSQL | update_or_create | u_o_c + savepoint | ours simple / raw simple | ours prepared / raw prepared | ours simple / u_o_c |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
		for clients in $CLIENTS; do
			for keyset in spread hot; do
				k="$sync,$clients,$keyset"
				echo "| $clients | $keyset | ${TPS[$k,ours_simple]} | ${TPS[$k,ours_prepared]} | ${TPS[$k,raw_simple]} | ${TPS[$k,raw_prepared]} | ${TPS[$k,plpgsql]} | ${TPS[$k,uoc]} | ${TPS[$k,uoc_savepoint]} | $(ratio "${TPS[$k,ours_simple]}" "${TPS[$k,raw_simple]}") | $(ratio "${TPS[$k,ours_prepared]}" "${TPS[$k,raw_prepared]}") | $(ratio "${TPS[$k,ours_simple]}" "${TPS[$k,uoc]}") |"
			done
		done
		echo
	done
	if [ -z "${BENCH_SKIP_BATCH:-}" ]; then
		echo "## Batch: 1,000,000 input rows, 250,000 distinct keys, target half full"
		echo
		echo "| method | seconds | rows/s | result |"
		echo "|---|---|---|---|"
		for m in ours groupby nogroup loop; do
			s=${BATCH_S[$m]}
			rps=$( [ -n "$s" ] && awk -v s="$s" 'BEGIN { printf "%.0f", 1000000 / s }' || echo "–")
			label=$m
			case $m in
				ours) label="upsert_increment() aggregate" ;;
				groupby) label="INSERT ... SELECT ... GROUP BY ... ON CONFLICT (by hand)" ;;
				nogroup) label="the same without GROUP BY" ;;
				loop) label="row-by-row PL/pgSQL loop" ;;
			esac
			echo "| $label | ${s:-–} | $rps | ${BATCH_RESULT[$m]} |"
		done
		echo
		echo "Ratios: ours / GROUP BY = $(ratio "${BATCH_S[groupby]}" "${BATCH_S[ours]}") (throughput), ours / loop = $(ratio "${BATCH_S[loop]}" "${BATCH_S[ours]}")."
		echo
		echo "Backend peak RSS (VmHWM): idle $MEM_BASE kB; our batch over 250,000 keys $MEM_250K kB; the same 1,000,000 rows over 25,000 keys $MEM_25K kB (shared buffers the backend touched count in RSS too)."
		echo
	fi
} >"$report"
cp "$report" "$OUT/latest.md"
cat "$report"
rm -rf "$work"
if [ "$failures" -gt 0 ]; then
	echo "$failures failures" >&2
	exit 1
fi
