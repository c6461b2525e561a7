#!/usr/bin/env bash
# Dump/restore and pg_upgrade round trips of a database that uses
# upsert_counter (make test runs this as root, after the other suites).
#
#   1. pg_dump / pg_restore into a new database on the running cluster
#      (PGHOST, PGPORT): CREATE EXTENSION runs the install scripts again,
#      so the aggregates stay volatile and identical calls count twice.
#   2. pg_upgrade from a fresh PostgreSQL 15 cluster to another: it
#      re-creates the aggregates one by one (as pg_dump --binary-upgrade
#      does), immutable; identical calls in one query must then be refused,
#      never written once, and everything else must work on.
# Both keep rows that background mode logged and no fold has taken yet
# (the log is the extension's configuration data), and fold them exactly.
#
# Needs UC_PGBIN and a scratch directory UC_WORK that the postgres OS user
# can write.  Prints "result: N checks passed, N checks failed".
set -uo pipefail

BIN=${UC_PGBIN:?}
WORK=${UC_WORK:?}
passed=0
failed=0

check() {	# check NAME EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then
		passed=$((passed + 1))
		echo "ok: $1"
	else
		failed=$((failed + 1))
		echo "FAILED: $1: expected [$2], got [$3]"
	fi
}

as_pg() { (cd "$WORK" && runuser -u postgres -- "$@"); }
q() {	# q PORT DB SQL: one value, errors as their SQLSTATE
	as_pg env PGHOST="$WORK" PGPORT="$1" "$BIN/psql" -X -At -v ON_ERROR_STOP=1 -d "$2" \
		-c "\\set VERBOSITY sqlstate" -c "$3" 2>&1 | tail -1
}

SETUP="CREATE EXTENSION upsert_counter;
CREATE TABLE c (k int PRIMARY KEY, n int NOT NULL, at timestamptz);
SELECT upsert_increment('c', jsonb_build_object('k', g % 3), '{\"n\": 1}') FROM generate_series(1, 30) g;
SET upsert_counter.fold_worker = off;
SET upsert_counter.flush = background;
SET TimeZone = 'Asia/Tokyo';
SELECT upsert_increment('c', '{\"k\": 2}', '{\"n\": 5}', '{\"at\": \"2026-11-22 09:00\"}');
SELECT upsert_increment('c', '{\"k\": 7}', '{\"n\": 1}');"
PENDING="SELECT sum(pending) FROM upsert_counter_backlog"
FOLD="SELECT upsert_counter_fold() ->> 'folded'"
FOLDED="SET TimeZone = 'UTC'; SELECT string_agg(k || ':' || n || ':' || coalesce(at::text, '-'), ' ' ORDER BY k) FROM c WHERE k IN (2, 7)"
TWICE="SELECT upsert_increment('c', '{\"k\": 1}', '{\"n\": 1}'), upsert_increment('c', '{\"k\": 1}', '{\"n\": 1}')"
VOLATILITY="SELECT string_agg(DISTINCT provolatile::text, ',') FROM pg_proc WHERE proname = 'upsert_increment' AND prokind = 'a'"

# 1. dump and restore on the running cluster
host=$PGHOST port=$PGPORT
as_pg env PGHOST="$host" PGPORT="$port" "$BIN/createdb" upg_src
as_pg env PGHOST="$host" PGPORT="$port" "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -d upg_src -c "$SETUP" >/dev/null
as_pg env PGHOST="$host" PGPORT="$port" "$BIN/pg_dump" -Fc -f "$WORK/upg.dump" upg_src
as_pg env PGHOST="$host" PGPORT="$port" "$BIN/createdb" upg_dst
as_pg env PGHOST="$host" PGPORT="$port" "$BIN/pg_restore" -d upg_dst "$WORK/upg.dump"
rq() { as_pg env PGHOST="$host" PGPORT="$port" "$BIN/psql" -X -At -d upg_dst -c "$1" 2>&1 | tail -1; }
check "dump/restore: rows restored" "30" "$(rq "SELECT sum(n) FROM c")"
check "dump/restore: aggregates volatile" "v" "$(rq "$VOLATILITY")"
rq "$TWICE" >/dev/null
check "dump/restore: identical calls both count" "12" "$(rq "SELECT n FROM c WHERE k = 1")"
check "dump/restore: logged rows kept" "2" "$(rq "$PENDING")"
check "dump/restore: logged rows folded" "2" "$(rq "$FOLD")"
check "dump/restore: folded as logged" "2:15:2026-11-22 00:00:00+00 7:1:-" "$(rq "$FOLDED")"

# 2. pg_upgrade between two fresh clusters
mkdir -p "$WORK/pgu"
chown postgres: "$WORK/pgu"
old=$WORK/pgu/old new=$WORK/pgu/new
oport=$((PGPORT + 100)) nport=$((PGPORT + 101))
for d in "$old" "$new"; do
	as_pg "$BIN/initdb" -D "$d" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null 2>&1 ||
		{ echo "initdb $d failed"; exit 1; }
done
start() { as_pg "$BIN/pg_ctl" -D "$1" -l "$1.log" -w -o "-p $2 -k $WORK -c listen_addresses=''" start >/dev/null; }
stop() { as_pg "$BIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true; }
trap 'stop "$old"; stop "$new"' EXIT
start "$old" "$oport"
as_pg env PGHOST="$WORK" PGPORT="$oport" "$BIN/createdb" app
as_pg env PGHOST="$WORK" PGPORT="$oport" "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -d app -c "$SETUP" >/dev/null
check "before pg_upgrade: aggregates volatile" "v" "$(q "$oport" app "$VOLATILITY")"
stop "$old"
if ! (cd "$WORK/pgu" && runuser -u postgres -- "$BIN/pg_upgrade" -b "$BIN" -B "$BIN" \
	-d "$old" -D "$new" -p "$oport" -P "$nport" -s "$WORK" >"$WORK/pgu/pg_upgrade.out" 2>&1); then
	cat "$WORK/pgu/pg_upgrade.out"
	check "pg_upgrade ran" "0" "1"
else
	start "$new" "$nport"
	check "after pg_upgrade: rows kept" "30" "$(q "$nport" app "SELECT sum(n) FROM c")"
	check "after pg_upgrade: logged rows kept" "2" "$(q "$nport" app "$PENDING")"
	check "after pg_upgrade: logged rows folded" "2" "$(q "$nport" app "$FOLD")"
	check "after pg_upgrade: folded as logged" "2:15:2026-11-22 00:00:00+00 7:1:-" "$(q "$nport" app "$FOLDED")"
	check "after pg_upgrade: aggregates re-created immutable" "i" "$(q "$nport" app "$VOLATILITY")"
	check "after pg_upgrade: identical calls refused" "ERROR:  0A000" "$(q "$nport" app "$TWICE")"
	check "after pg_upgrade: different calls work" "t" \
		"$(q "$nport" app "SELECT upsert_increment('c', '{\"k\": 1}', '{\"n\": 1}') IS NOT NULL AND upsert_increment('c', '{\"k\": 1}', '{\"n\": 2}') IS NOT NULL")"
	check "after pg_upgrade: counts exact" "13" "$(q "$nport" app "SELECT n FROM c WHERE k = 1")"
	check "after pg_upgrade: re-created extension is volatile again" "v" \
		"$(q "$nport" app "DROP EXTENSION upsert_counter; CREATE EXTENSION upsert_counter; $VOLATILITY")"
fi

echo "result: $passed checks passed, $failed checks failed"
[ "$failed" -eq 0 ]
