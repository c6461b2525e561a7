#!/usr/bin/env bash
# make bench: pgbench-driven benchmarks of upsert_counter against the plain-SQL
# alternatives, measured in the same run on a throwaway cluster.
#
# The machine is small and shared, so single runs are noisy: every
# workload runs BENCH_ROUNDS times, interleaved with the others, and the
# report gives the median.  synchronous_commit = off (CPU cost, where the
# differences live) runs at every client count; = on (commit-bound) at 8.
# The cluster runs with fsync on, so that = on really waits for the disk.
#
# Environment: BENCH_DURATION (seconds per pgbench run, default 6),
# BENCH_ROUNDS (default 3), BENCH_CLIENTS (default "1 8 32"),
# BENCH_SYNC_ON_CLIENTS (default "8"), BENCH_SKIP_BATCH=1 to skip the batch.
#
# Writes bench/results/<date>.md and bench/results/latest.md; exits non-zero
# if any run's final counts are not exact.
source "$(dirname "$0")/../scripts/pgenv.sh"

DURATION=${BENCH_DURATION:-6}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-"1 8 32"}
SYNC_ON_CLIENTS=${BENCH_SYNC_ON_CLIENTS:-"8"}
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

uc_ensure_packages django psycopg2
uc_build_install
SETTINGS=("shared_buffers = '512MB'" "max_connections = 100" "max_wal_size = '4GB'"
	"checkpoint_timeout = '30min'" "work_mem = '64MB'")
# fsync on: the synchronous_commit = on column must wait for a real flush
UC_FSYNC=on uc_start_cluster "${SETTINGS[@]}"
uc_as_postgres createdb bench
export PGDATABASE=bench
psql_b() { uc_as_postgres psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
psql_b -f "$work/setup.sql" >/dev/null

total() { psql_b -Atc "SELECT sum(participants) FROM ab_hourly"; }

declare -A TPS
declare -A RUNS

# run_pgbench NAME SCRIPT MODE CLIENTS KEYSET SYNC [FLUSH]
run_pgbench() {
	local name=$1 script=$2 mode=$3 clients=$4 keyset=$5 sync=$6 flush=${7:-statement}
	local ntests nhours before after out tps processed
	case $keyset in
		hot) ntests=2; nhours=2 ;;
		1key) ntests=1; nhours=1 ;;
		4keys) ntests=4; nhours=1 ;;
		*) ntests=10000; nhours=24 ;;
	esac
	psql_b -c "VACUUM ab_hourly" >/dev/null
	before=$(total)
	out=$(PGOPTIONS="-c synchronous_commit=$sync -c upsert_counter.flush=$flush" uc_as_postgres pgbench -n -M "$mode" \
		-c "$clients" -j "$(( clients < 2 ? clients : 2 ))" -T "$DURATION" \
		-D ntests=$ntests -D nhours=$nhours -f "$work/$script" bench 2>&1) || {
		echo "$out" >&2
		echo "pgbench failed for $name" >&2
		failures=$((failures + 1))
		RUNS[$sync,$clients,$keyset,$name]+="0 "
		return
	}
	after=$(total)
	tps=$(printf '%s\n' "$out" | awk '/^tps = / { printf "%.0f", $3 }')
	processed=$(printf '%s\n' "$out" | awk '/number of transactions actually processed/ { print $NF }')
	if [ "$((after - before))" -ne "$processed" ]; then
		echo "COUNT MISMATCH in $name ($sync, $clients clients, $keyset): +$((after - before)) for $processed transactions" >&2
		failures=$((failures + 1))
	fi
	RUNS[$sync,$clients,$keyset,$name]+="$tps "
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

clients_for() { if [ "$1" = off ]; then echo "$CLIENTS"; else echo "$SYNC_ON_CLIENTS"; fi; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

uc_log "single-row workloads: $ROUNDS rounds of $DURATION s runs, interleaved"
for round in $(seq 1 "$ROUNDS"); do
	uc_log "round $round"
	for sync in off on; do
		for clients in $(clients_for $sync); do
			for keyset in spread hot; do
				for w in "${WORKLOADS[@]}"; do
					set -- $w
					run_pgbench "$1" "$2" "$3" "$clients" "$keyset" "$sync"
				done
			done
		done
	done
done
# Commit-time flush: 16 clients, a hot key set, a transaction that holds the
# counter while it does 5 ms of other work
FLUSH_WORKLOADS=(
	"txn_commit txn_ours.sql commit"
	"txn_statement txn_ours.sql statement"
	"txn_raw txn_raw.sql statement"
)
uc_log "commit-time flush: $ROUNDS rounds, 16 clients"
for round in $(seq 1 "$ROUNDS"); do
	for keyset in 1key 4keys; do
		for w in "${FLUSH_WORKLOADS[@]}"; do
			set -- $w
			run_pgbench "$1" "$2" simple 16 "$keyset" off "$3"
		done
	done
done

for k in "${!RUNS[@]}"; do
	TPS[$k]=$(printf '%s' "${RUNS[$k]}" | median)
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# batch: time one statement, on a target reset to half full; the median of
# ROUNDS runs
declare -A BATCH_RUNS BATCH_S BATCH_RESULT
run_batch() {
	local name=$1 file=$2 t0 t1 out
	psql_b -f "$work/batch_reset.sql" >/dev/null
	t0=$(date +%s.%N)
	if out=$(psql_b -f "$work/$file" 2>&1); then
		t1=$(date +%s.%N)
		BATCH_RUNS[$name]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') "
		local mism
		mism=$(psql_b -Atf "$work/batch_check.sql")
		BATCH_RESULT[$name]="$mism mismatches"
		[ "$mism" = 0 ] || { echo "COUNT MISMATCH in batch $name: $mism keys" >&2; failures=$((failures + 1)); }
	else
		BATCH_RESULT[$name]="fails: $(printf '%s\n' "$out" | grep -m1 ERROR | sed 's/.*ERROR: *//')"
	fi
	uc_log "batch $name: ${BATCH_RUNS[$name]:-–} s, ${BATCH_RESULT[$name]}"
}

# Peak private memory (RssAnon, sampled every 20 ms; shared buffers the
# backend touches are not in it) of a backend running our batch.  $1: the
# number of distinct keys for the same 1,000,000 input rows, or "idle".
batch_memory() {
	local keys=$1 sql pid peak=0 v
	psql_b -f "$work/batch_reset.sql" >/dev/null
	if [ "$keys" = idle ]; then
		sql="SELECT pg_sleep(1)"
	else
		sql="SELECT pg_sleep(1); SELECT upsert_increment('batch_target',
		       jsonb_build_object('ab_test_id', (ab_test_id - 1) % ($keys / 24) + 1, 'version', version, 'date', date, 'hour', hour),
		       jsonb_build_object('participants', participants))
		     FROM batch_input"
	fi
	uc_as_postgres env PGAPPNAME=uc_memory psql -X -q -d bench -c "$sql" >/dev/null &
	local client=$!
	# the active one: the previous probe's backend may still be exiting
	for _ in $(seq 1 100); do
		pid=$(psql_b -Atc "SELECT pid FROM pg_stat_activity WHERE application_name = 'uc_memory' AND state = 'active'")
		[ -n "$pid" ] && break
		sleep 0.05
	done
	while [ -n "$pid" ] && [ -e "/proc/$pid" ]; do
		v=$(awk '/RssAnon/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
		[ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v
		sleep 0.02
	done
	wait "$client"
	echo "$peak"
}

if [ -z "${BENCH_SKIP_BATCH:-}" ]; then
	uc_log "batch: 1,000,000 rows over 250,000 keys into a half-full table"
	psql_b -f "$work/batch_setup.sql" >/dev/null
	run_batch nogroup batch_nogroup.sql
	for round in $(seq 1 "$ROUNDS"); do
		run_batch ours batch_ours.sql
		run_batch rows batch_rows.sql
		run_batch groupby batch_groupby.sql
		run_batch loop batch_loop.sql
	done
	for m in ours rows groupby loop; do
		BATCH_S[$m]=$(printf '%s' "${BATCH_RUNS[$m]:-}" | median)
	done
	MEM_BASE=$(batch_memory idle)
	MEM_250K=$(batch_memory 250000)
	MEM_25K=$(batch_memory 25000)
fi

# Django: upsert_increment() against update_or_create through the ORM
DJANGO_RESULT=$(
	cp -r "$UC_REPO/python" "$work/python" && chown -R postgres: "$work/python" &&
	uc_as_postgres /usr/bin/python3 "$work/python/tests/bench_django.py" 2>&1 | tail -4
) || DJANGO_RESULT="(the Django benchmark failed)"

# Instructions per statement (callgrind, deterministic), on a cluster of
# its own, after the throughput runs so it does not disturb them
uc_stop_cluster
CALLGRIND=$(CALLGRIND_OUT="$work/callgrind.md" bash "$UC_REPO/bench/callgrind.sh" 2>/dev/null) ||
	CALLGRIND="(the callgrind run failed)"
CPU_SPLIT=$(CPU_SPLIT_OUT="$work/cpu_split.md" bash "$UC_REPO/bench/cpu_split.sh" 2>/dev/null) ||
	CPU_SPLIT="(the CPU split run failed)"
# One hot key in background mode against plain appends (a cluster of its own)
HOTKEY=$(HOTKEY_OUT="$work/hotkey.md" bash "$UC_REPO/bench/hotkey.sh" 2>/dev/null) || {
	HOTKEY="${HOTKEY:-(the hot key run failed)}"
	failures=$((failures + 1))
}

# ---- report ----
{
	echo "# upsert_counter benchmark, $stamp"
	echo
	echo "Command: \`make bench\` (BENCH_DURATION=$DURATION, BENCH_ROUNDS=$ROUNDS, clients: $CLIENTS; synchronous_commit = on at $SYNC_ON_CLIENTS)."
	echo
	echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)."
	echo "Server: $("$UC_PGBIN/postgres" --version), fsync on (so synchronous_commit = on waits for the disk), $(printf '%s, ' "${SETTINGS[@]}" | sed 's/, $//')."
	echo "Client: pgbench on the same machine over a unix socket, -j min(clients, 2), $DURATION s per run; each figure is the median of $ROUNDS runs interleaved with the other workloads (tps)."
	echo "Workloads: ours simple = \`SELECT upsert_increment('ab_hourly', '<keys JSON>', '{\"participants\": 1}')\` as psycopg2 sends it; ours prepared = the same over -M prepared with the JSON text built from the parameters; raw = wagtail-ab-testing's INSERT ... ON CONFLICT ... DO UPDATE; PL/pgSQL = that statement in a function; update_or_create = BEGIN; SELECT ... FOR UPDATE; UPDATE (or INSERT); COMMIT, and with Django's savepoint."
	echo "Table: the wagtail-ab-testing hourly log, UNIQUE (ab_test_id, version, date, hour), pre-filled with the 240,000 keys (every call takes the update path)."
	echo "Keys: spread = 240,000 keys at random; hot = 4 keys."
	echo "Every run checks that the counters grew by exactly the number of transactions pgbench completed."
	echo
	echo "## Instructions per statement (callgrind)"
	echo
	echo "One statement in a single-user backend, update path, start-up cancelled out (bench/callgrind.sh): deterministic, unlike the tps figures below."
	echo
	printf '%s\n' "$CALLGRIND"
	echo
	echo "## Where one client's time goes"
	echo
	echo "One client, simple protocol: the backend's user time follows the instruction counts; its system time (the socket), the client's time and the waits between them are the same for every statement (bench/README.md)."
	echo
	printf '%s\n' "$CPU_SPLIT"
	echo
	printf '%s\n' "$HOTKEY"
	echo
	for sync in off on; do
		echo "## synchronous_commit = $sync"
		echo
		echo "| clients | keys | ours simple | ours prepared | raw simple | raw prepared | PL/pgSQL | update_or_create | u_o_c + savepoint | ours simple / raw simple | ours prepared / raw prepared | ours simple / u_o_c |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
		for clients in $(clients_for $sync); do
			for keyset in spread hot; do
				k="$sync,$clients,$keyset"
				echo "| $clients | $keyset | ${TPS[$k,ours_simple]} | ${TPS[$k,ours_prepared]} | ${TPS[$k,raw_simple]} | ${TPS[$k,raw_prepared]} | ${TPS[$k,plpgsql]} | ${TPS[$k,uoc]} | ${TPS[$k,uoc_savepoint]} | $(ratio "${TPS[$k,ours_simple]}" "${TPS[$k,raw_simple]}") | $(ratio "${TPS[$k,ours_prepared]}" "${TPS[$k,raw_prepared]}") | $(ratio "${TPS[$k,ours_simple]}" "${TPS[$k,uoc]}") |"
			done
		done
		echo
	done
	echo "## Commit-time flush: BEGIN; upsert; 5 ms of other work; COMMIT (16 clients, synchronous_commit = off)"
	echo
	echo "| keys | upsert_counter.flush = commit | = statement | raw INSERT ... ON CONFLICT | commit / statement | commit / raw |"
	echo "|---|---|---|---|---|---|"
	for keyset in 1key 4keys; do
		k="off,16,$keyset"
		echo "| ${keyset%key*} | ${TPS[$k,txn_commit]} | ${TPS[$k,txn_statement]} | ${TPS[$k,txn_raw]} | $(ratio "${TPS[$k,txn_commit]}" "${TPS[$k,txn_statement]}") | $(ratio "${TPS[$k,txn_commit]}" "${TPS[$k,txn_raw]}") |"
	done
	echo
	echo "With 16 clients and 4 keys, statement mode already runs 4 transactions at once, so no mode can beat it by more than 16 / 4 = 4x there; with 1 key the bound is 16x."
	echo
	echo "## Django: upsert_increment() against update_or_create (python/tests/bench_django.py)"
	echo
	echo '```'
	printf '%s\n' "$DJANGO_RESULT"
	echo '```'
	echo
	echo "## Targets (synchronous_commit = off)"
	echo
	echo "| target | measured | |"
	echo "|---|---|---|"
	target() { # label value threshold
		printf '| %s | %s | %s |\n' "$1" "$2" "$(awk -v v="$2" -v t="$3" 'BEGIN { print (v != "n/a" && v + 0 >= t) ? "met" : "**not met**" }')"
	}
	cg() { printf '%s\n' "$CALLGRIND" | awk -F'|' -v w="$1" '$2 ~ "^ *" w " *$" { gsub(/ /, "", $3); print $3 }'; }
	if [ -n "$(cg raw)" ] && [ -n "$(cg ours)" ] && [ -n "$(cg plpgsql)" ]; then
		# as "higher is better" ratios: raw / ours >= 1 / 0.70, plpgsql / ours >= 1
		target "instructions: ours <= 0.70x raw (raw / ours)" "$(ratio "$(cg raw)" "$(cg ours)")" 1.4286
		target "instructions: ours <= PL/pgSQL wrapper (PL/pgSQL / ours)" "$(ratio "$(cg plpgsql)" "$(cg ours)")" 1
	fi
	for c in 1 8; do
		for keyset in spread hot; do
			k="off,$c,$keyset"
			[ -n "${TPS[$k,ours_simple]:-}" ] || continue
			target "ours simple >= 1.3x raw simple, $c clients, $keyset" "$(ratio "${TPS[$k,ours_simple]}" "${TPS[$k,raw_simple]}")" 1.3
		done
	done
	for keyset in spread hot; do
		k="off,8,$keyset"
		[ -n "${TPS[$k,ours_simple]:-}" ] || continue
		target "ours prepared >= 0.95x raw prepared, 8 clients, $keyset" "$(ratio "${TPS[$k,ours_prepared]}" "${TPS[$k,raw_prepared]}")" 0.95
		target "ours >= 4x update_or_create, 8 clients, $keyset" "$(ratio "${TPS[$k,ours_simple]}" "${TPS[$k,uoc]}")" 4
	done
	for keyset in 1key 4keys; do
		k="off,16,$keyset"
		target "commit mode >= 5x statement mode, ${keyset%key*} key(s)" "$(ratio "${TPS[$k,txn_commit]}" "${TPS[$k,txn_statement]}")" 5
		target "commit mode >= 5x raw, ${keyset%key*} key(s)" "$(ratio "${TPS[$k,txn_commit]}" "${TPS[$k,txn_raw]}")" 5
	done
	if [ -z "${BENCH_SKIP_BATCH:-}" ]; then
		target "batch: ours (typed rows) >= 0.8x the GROUP BY statement" "$(ratio "${BATCH_S[groupby]}" "${BATCH_S[rows]}")" 0.8
		target "batch: ours (typed rows) >= 8x the row-by-row loop" "$(ratio "${BATCH_S[loop]}" "${BATCH_S[rows]}")" 8
	fi
	echo
	if [ -z "${BENCH_SKIP_BATCH:-}" ]; then
		echo "## Batch: 1,000,000 input rows, 250,000 distinct keys, target half full"
		echo
		echo "Median of $ROUNDS runs each (the statement without GROUP BY runs once: it fails)."
		echo
		echo "| method | seconds | rows/s | result |"
		echo "|---|---|---|---|"
		for m in ours rows groupby nogroup loop; do
			s=${BATCH_S[$m]:-}
			rps=$( [ -n "$s" ] && awk -v s="$s" 'BEGIN { printf "%.0f", 1000000 / s }' || echo "–")
			label=$m
			case $m in
				ours) label="upsert_increment() aggregate, jsonb_build_object() per row" ;;
				rows) label="upsert_increment_rows() over the rows, no JSON" ;;
				groupby) label="INSERT ... SELECT ... GROUP BY ... ON CONFLICT (by hand)" ;;
				nogroup) label="the same without GROUP BY" ;;
				loop) label="row-by-row PL/pgSQL loop" ;;
			esac
			echo "| $label | ${s:-–} | $rps | ${BATCH_RESULT[$m]} |"
		done
		echo
		echo "Ratios (throughput): typed rows / GROUP BY = $(ratio "${BATCH_S[groupby]}" "${BATCH_S[rows]}"), typed rows / loop = $(ratio "${BATCH_S[loop]}" "${BATCH_S[rows]}"); jsonb / GROUP BY = $(ratio "${BATCH_S[groupby]}" "${BATCH_S[ours]}"), jsonb / loop = $(ratio "${BATCH_S[loop]}" "${BATCH_S[ours]}")."
		echo
		echo "Backend peak private memory (RssAnon, sampled every 20 ms): idle $MEM_BASE kB; our batch of 1,000,000 rows over 250,000 keys $MEM_250K kB; the same rows over 25,000 keys $MEM_25K kB."
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
