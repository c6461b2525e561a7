#!/usr/bin/env bash
# Instructions per call, counted by callgrind: deterministic on a noisy
# machine, unlike seconds.  Part of make bench; runs alone too
# (bench/callgrind.sh, as root).
#
# Each workload runs in a single-user backend (postgres --single) of a
# scratch cluster, under valgrind --tool=callgrind, twice: with N1 and N2
# statements.  The difference of the two totals over N2 - N1 is the cost of
# one statement with start-up and shut-down cancelled out: parse, analyze,
# plan, execute and commit, all inside the backend (no protocol, no
# client).  Every statement takes the update path (the keys exist).
#
# Prints a table and writes it to $CALLGRIND_OUT (default
# tmp/callgrind.md, ignored by git; make bench puts it in its report).
source "$(dirname "$0")/../scripts/pgenv.sh"

N1=${CALLGRIND_N1:-200}
N2=${CALLGRIND_N2:-600}
OUTFILE=${CALLGRIND_OUT:-$UC_REPO/tmp/callgrind.md}

command -v valgrind >/dev/null || {
	uc_log "installing valgrind"
	apt-get update -qq </dev/null && apt-get install -y -qq valgrind </dev/null >/dev/null
}
mkdir -p "$(dirname "$OUTFILE")"
uc_bench_db
uc_runuser "$UC_PGBIN/pg_ctl" -D "$UC_CLUSTER/data" -m fast -w stop >/dev/null

# statements NAME N: N statements of a workload, keys cycling over 24 hours
statements() {
	local i h
	# the prepared forms: prepared once (cancelled out with start-up), then
	# EXECUTEd; an EXECUTE's own parse is the same small cost for both
	case $1 in
		raw_prepared) echo "PREPARE p(int, text, date, int, int) AS INSERT INTO ab_hourly AS t (ab_test_id, version, date, hour, participants) VALUES (\$1, \$2, \$3, \$4, \$5) ON CONFLICT (ab_test_id, version, date, hour) DO UPDATE SET participants = t.participants + EXCLUDED.participants" ;;
		ours_prepared) echo "PREPARE p(regclass, jsonb, jsonb) AS SELECT upsert_increment(\$1, \$2, \$3)" ;;
		background) echo "SET upsert_counter.flush = background"; echo "SET upsert_counter.fold_worker = off" ;;
		append) echo "CREATE TABLE IF NOT EXISTS hot_append (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k int NOT NULL, n bigint NOT NULL, at timestamptz NOT NULL DEFAULT now())" ;;
	esac
	for ((i = 0; i < $2; i++)); do
		h=$((i % 24))
		case $1 in
			raw) echo "INSERT INTO ab_hourly AS t (ab_test_id, version, date, hour, participants) VALUES (7, 'control', '2026-11-22', $h, 1) ON CONFLICT (ab_test_id, version, date, hour) DO UPDATE SET participants = t.participants + EXCLUDED.participants" ;;
			ours | background) echo "SELECT upsert_increment('ab_hourly', '{\"ab_test_id\": 7, \"version\": \"control\", \"date\": \"2026-11-22\", \"hour\": $h}', '{\"participants\": 1}')" ;;
			append) echo "INSERT INTO hot_append (k, n) VALUES ($h, 1)" ;;
			plpgsql) echo "SELECT bench_plpgsql_upsert(7, 'control', '2026-11-22', $h, 1)" ;;
			raw_prepared) echo "EXECUTE p(7, 'control', '2026-11-22', $h, 1)" ;;
			ours_prepared) echo "EXECUTE p('ab_hourly', '{\"ab_test_id\": 7, \"version\": \"control\", \"date\": \"2026-11-22\", \"hour\": $h}', '{\"participants\": 1}')" ;;
		esac
	done
}

# total NAME N: instructions of a single-user run of N statements
total() {
	local f=$UC_CLUSTER/$1.$2
	statements "$1" "$2" >"$f.sql"
	chown postgres: "$f.sql"
	uc_runuser valgrind --tool=callgrind --callgrind-out-file="$f.out" \
		"$UC_PGBIN/postgres" --single -D "$UC_CLUSTER/data" -c fsync=off bench \
		<"$f.sql" >"$f.log" 2>&1 || { cat "$f.log" >&2; return 1; }
	grep -E '^(summary|totals):' "$f.out" | tail -1 | awk '{ print $2 }'
}

declare -A PER
WORKLOADS=${CALLGRIND_WORKLOADS:-"raw ours plpgsql raw_prepared ours_prepared"}
for w in $WORKLOADS; do
	uc_log "callgrind: $w"
	a=$(total "$w" "$N1")
	b=$(total "$w" "$N2")
	PER[$w]=$(((b - a) / (N2 - N1)))
done

{
	echo "| statement (single-user backend, update path) | instructions / statement | vs raw |"
	echo "| --- | ---: | ---: |"
	for w in $WORKLOADS; do
		base=raw
		[ "$w" = ours_prepared ] && base=raw_prepared
		[ "$w" = background ] && [ -n "${PER[append]:-}" ] && base=append
		printf '| %s | %s | %s |\n' "$w" "${PER[$w]}" \
			"$(awk -v a="${PER[$w]}" -v b="${PER[$base]}" 'BEGIN { printf "%.2fx", a / b }')"
	done
	echo
	echo "ours_prepared is compared with raw_prepared; background (the call in background mode: logging only, no fold) with append (a plain INSERT of a row); the others with raw."
	echo
	echo "Command: \`bench/callgrind.sh\` (N1=$N1, N2=$N2; $(valgrind --version), $("$UC_PGBIN/postgres" --version))."
} | tee "$OUTFILE"
