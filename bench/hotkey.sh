#!/usr/bin/env bash
# One hot key, commit-bound: background mode against plain appends, in one
# run.  Part of make bench; runs alone too (bench/hotkey.sh, as root).
#
# A throwaway cluster with fsync on and synchronous_commit = on, so that
# every transaction waits for its commit record to reach the disk (group
# commit batches them).  HOTKEY_CLIENTS clients (32) run autocommit
# single calls for HOTKEY_DURATION seconds (10) each, HOTKEY_ROUNDS times
# (3) interleaved, and the median is reported:
#
#   append      INSERT INTO hot_append (k, n) VALUES (1, 1): the physical
#               ceiling, a row appended per transaction
#   background  SELECT upsert_increment('hot', '{"k": 1}', '{"n": 1}') with
#               upsert_counter.flush = background
#   statement   the same call in statement mode
#   raw         INSERT ... ON CONFLICT (k) DO UPDATE SET n = t.n + 1
#
# During the background runs the backlog's oldest row is sampled every
# 100 ms (upsert_counter_backlog.oldest_age): its p50, p99 and maximum are
# the fold's lag.  After each background run everything pending is folded
# and the counter must have grown by exactly the number of transactions
# pgbench committed; after the others likewise.  Prints a Markdown report
# (also to $HOTKEY_OUT, default tmp/hotkey.md) and exits non-zero if a
# count is not exact.
source "$(dirname "$0")/../scripts/pgenv.sh"

DURATION=${HOTKEY_DURATION:-10}
ROUNDS=${HOTKEY_ROUNDS:-3}
CLIENTS=${HOTKEY_CLIENTS:-32}
OUTFILE=${HOTKEY_OUT:-$UC_REPO/tmp/hotkey.md}
mkdir -p "$(dirname "$OUTFILE")"
failures=0

uc_ensure_packages
uc_build_install
UC_FSYNC=on uc_start_cluster "synchronous_commit = on" "max_connections = 100" \
	"shared_buffers = '256MB'" "max_wal_size = '4GB'" "checkpoint_timeout = '30min'"
uc_as_postgres createdb hot
export PGDATABASE=hot
psql_h() { uc_as_postgres psql -X -q -At -v ON_ERROR_STOP=1 -d hot "$@"; }
psql_h <<'EOF'
CREATE EXTENSION upsert_counter;
CREATE TABLE hot (k int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO hot VALUES (1, 0);
CREATE TABLE hot_append (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k int NOT NULL,
                         n bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
EOF

work=$(mktemp -d /tmp/upsert_counter_hotkey.XXXXXX)
chmod 755 "$work"
echo "INSERT INTO hot_append (k, n) VALUES (1, 1);" >"$work/append.sql"
echo "SELECT upsert_increment('hot', '{\"k\": 1}', '{\"n\": 1}');" >"$work/call.sql"
echo "INSERT INTO hot AS t (k, n) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n;" >"$work/raw.sql"
chmod 644 "$work"/*.sql

declare -A TPS
declare -A LAGS

count() {
	case $1 in
		append) psql_h -c "SELECT count(*) FROM hot_append" ;;
		*) psql_h -c "SELECT n FROM hot WHERE k = 1" ;;
	esac
}

# run NAME ROUND
run() {
	local name=$1 round=$2 script flush=statement before after out processed tps sampler
	case $name in
		append) script=append.sql ;;
		raw) script=raw.sql ;;
		background) script=call.sql; flush=background ;;
		statement) script=call.sql ;;
	esac
	psql_h -c "VACUUM hot, hot_append" >/dev/null
	before=$(count "$name")
	if [ "$name" = background ]; then
		# the fold's lag: the backlog's oldest row, every 100 ms
		(
			end=$((SECONDS + DURATION))
			while [ $SECONDS -lt $end ]; do
				psql_h -c "SELECT coalesce(extract(epoch FROM max(oldest_age)) * 1000, 0)::int FROM upsert_counter_backlog"
				sleep 0.1
			done
		) >"$work/lag.$round" 2>/dev/null &
		sampler=$!
	fi
	out=$(PGOPTIONS="-c upsert_counter.flush=$flush" uc_as_postgres pgbench -n -M simple \
		-c "$CLIENTS" -j 2 -T "$DURATION" -f "$work/$script" hot 2>&1) || {
		echo "$out" >&2
		failures=$((failures + 1))
	}
	[ -n "${sampler:-}" ] && wait "$sampler"
	processed=$(printf '%s\n' "$out" | awk '/number of transactions actually processed/ { print $NF }' | cut -d/ -f1)
	tps=$(printf '%s\n' "$out" | awk '/^tps = / { printf "%.0f", $3 }')
	if [ "$name" = background ]; then
		psql_h -c "SELECT upsert_counter_fold('hot')" >/dev/null
		LAGS[$round]=$(sort -n "$work/lag.$round" | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- - -"; exit }
			printf "%d %d %d", v[int(NR * 0.5) + (NR * 0.5 > int(NR * 0.5))], v[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))], v[NR] }')
	fi
	after=$(count "$name")
	if [ "$((after - before))" != "$processed" ]; then
		uc_log "$name: counter grew by $((after - before)), pgbench committed $processed: NOT EXACT"
		failures=$((failures + 1))
	fi
	TPS[$name,$round]=$tps
	uc_log "hot key, $name, round $round: $tps tps, exact ($processed)"
}

for round in $(seq 1 "$ROUNDS"); do
	for name in append background statement raw; do
		run "$name" "$round"
	done
done

median() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
med() {
	local name=$1 vals=() r
	for r in $(seq 1 "$ROUNDS"); do vals+=("${TPS[$name,$r]}"); done
	median "${vals[@]}"
}
A=$(med append)
B=$(med background)
S=$(med statement)
R=$(med raw)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

{
	echo "## One hot key, synchronous_commit = on ($CLIENTS clients, fsync on)"
	echo
	echo "Autocommit single calls on one key, $ROUNDS interleaved runs of $DURATION s each, median tps; every run's count checked exact after a final fold."
	echo
	echo "| workload | tps | vs append |"
	echo "| --- | ---: | ---: |"
	echo "| plain append (\`INSERT INTO hot_append\`) | $A | 1.00 |"
	echo "| background mode (\`upsert_counter.flush = background\`) | $B | $(ratio "$B" "$A") |"
	echo "| statement mode | $S | $(ratio "$S" "$A") |"
	echo "| raw \`INSERT ... ON CONFLICT DO UPDATE\` | $R | $(ratio "$R" "$A") |"
	echo
	echo "Background / statement: $(ratio "$B" "$S")x; background / raw: $(ratio "$B" "$R")x."
	echo
	echo "Fold lag during the background runs (age of the oldest row not yet folded, sampled every 100 ms), ms:"
	echo
	echo "| round | p50 | p99 | max |"
	echo "| --- | ---: | ---: | ---: |"
	for r in $(seq 1 "$ROUNDS"); do
		read -r p50 p99 max <<<"${LAGS[$r]}"
		echo "| $r | $p50 | $p99 | $max |"
	done
	echo
	echo "Target: background >= 0.8x append: $( awk -v x="$(ratio "$B" "$A")" 'BEGIN { print (x >= 0.8) ? "met" : "NOT met" }')."
	echo
	echo "Command: \`bench/hotkey.sh\` (HOTKEY_CLIENTS=$CLIENTS, HOTKEY_DURATION=$DURATION, HOTKEY_ROUNDS=$ROUNDS; $("$UC_PGBIN/postgres" --version))."
} | tee "$OUTFILE"
rm -rf "$work"
[ "$failures" -eq 0 ]
