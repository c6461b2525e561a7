#!/usr/bin/env bash
# Where one client's wall-clock time per transaction goes: the backend's
# user and system CPU time and the client's CPU time, read from
# /proc/<pid>/stat while pgbench runs one client over the simple protocol,
# and the rest (waiting on each other: scheduling and wake-ups).  Part of
# make bench; runs alone too (bench/cpu_split.sh, as root).
#
# The instruction counts (bench/callgrind.sh) measure the backend's user
# time only; this shows how much of a transaction that is.
#
# Prints a table (medians of CPU_SPLIT_ROUNDS runs, default 3, of
# CPU_SPLIT_SECONDS seconds each, default 6) and writes it to
# $CPU_SPLIT_OUT (default tmp/cpu_split.md, ignored by git).
source "$(dirname "$0")/../scripts/pgenv.sh"

ROUNDS=${CPU_SPLIT_ROUNDS:-3}
SECONDS_PER_RUN=${CPU_SPLIT_SECONDS:-6}
OUTFILE=${CPU_SPLIT_OUT:-$UC_REPO/tmp/cpu_split.md}
WORKLOADS="ours_simple raw plpgsql"

mkdir -p "$(dirname "$OUTFILE")"
uc_bench_db
cp "$UC_REPO"/bench/sql/*.sql "$UC_CLUSTER"/
chmod 644 "$UC_CLUSTER"/*.sql
tick=$(getconf CLK_TCK)

stat_field() { awk -v f="$2" '{ print $f }' "/proc/$1/stat"; }
commits() { uc_as_postgres psql -X -Atd bench -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'"; }

# one WORKLOAD: prints "wall user sys client" in microseconds per transaction
one() {
	local w=$1 bpid cpid u0 s0 c0 x0 t0 u1 s1 c1 x1 t1
	PGOPTIONS="-c synchronous_commit=off" PGAPPNAME=uc_cpu_split uc_as_postgres pgbench -n -c 1 -j 1 \
		-T $((SECONDS_PER_RUN + 2)) -D ntests=10000 -D nhours=24 -f "$UC_CLUSTER/$w.sql" bench >/dev/null 2>&1 &
	sleep 1
	bpid=$(uc_as_postgres psql -X -Atd bench -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'uc_cpu_split'")
	cpid=$(pgrep -n -x pgbench)
	u0=$(stat_field "$bpid" 14) s0=$(stat_field "$bpid" 15) c0=$(($(stat_field "$cpid" 14) + $(stat_field "$cpid" 15)))
	x0=$(commits) t0=$(date +%s.%N)
	sleep "$SECONDS_PER_RUN"
	u1=$(stat_field "$bpid" 14) s1=$(stat_field "$bpid" 15) c1=$(($(stat_field "$cpid" 14) + $(stat_field "$cpid" 15)))
	x1=$(commits) t1=$(date +%s.%N)
	wait
	# the two probes' own commits are not pgbench's
	awk -v n=$((x1 - x0 - 1)) -v t0="$t0" -v t1="$t1" -v u=$((u1 - u0)) -v s=$((s1 - s0)) \
		-v c=$((c1 - c0)) -v tk="$tick" \
		'BEGIN { f = 1e6 / n; printf "%.1f %.1f %.1f %.1f\n", (t1 - t0) * f, u / tk * f, s / tk * f, c / tk * f }'
}

declare -A RUNS
for ((r = 0; r < ROUNDS; r++)); do
	for w in $WORKLOADS; do
		uc_log "cpu split: $w, round $((r + 1))"
		RUNS[$w]+="$(one "$w")"$'\n'
	done
done

median_col() { printf '%s' "$1" | awk -v c="$2" 'NF { print $c }' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
{
	echo "| statement (1 client, simple protocol) | wall µs / transaction | backend user | backend system | client (pgbench) | waiting |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: |"
	for w in $WORKLOADS; do
		wall=$(median_col "${RUNS[$w]}" 1) u=$(median_col "${RUNS[$w]}" 2)
		s=$(median_col "${RUNS[$w]}" 3) c=$(median_col "${RUNS[$w]}" 4)
		printf '| %s | %s | %s | %s | %s | %s |\n' "$w" "$wall" "$u" "$s" "$c" \
			"$(awk -v a="$wall" -v b="$u" -v c="$s" -v d="$c" 'BEGIN { printf "%.1f", a - b - c - d }')"
	done
	echo
	echo "Command: \`bench/cpu_split.sh\` (medians of $ROUNDS runs of $SECONDS_PER_RUN s; CPU times from /proc/<pid>/stat at $tick ticks per second)."
} | tee "$OUTFILE"
