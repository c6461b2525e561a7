#!/usr/bin/env bash
# make test: every test suite, from a fresh machine, as root or not.
#
# Installs what is missing, builds and installs the extension, starts a
# throwaway cluster as the postgres OS user, runs pg_regress and the
# isolation specs (make installcheck, as postgres, in a staged copy of the
# tree that postgres can write to), the Django suite (python/tests, with
# Debian's Django and psycopg2, with and without the extension), the fuzzer,
# the differential test against the plain statement (with logical decoding:
# the cluster runs with wal_level = logical) and the load test with faults
# (tests/, short forms), PL/Proxy sharding
# (tests/plproxy.py), dump/restore and pg_upgrade round trips
# (tests/upgrade.sh), then stops the cluster.  Prints one
# closing line "N passed, N failed" and exits non-zero on any failure.
source "$(dirname "$0")/pgenv.sh"

uc_ensure_packages django psycopg2 plproxy
uc_build_install
uc_start_cluster 'wal_level = logical'

stage=$UC_CLUSTER/tree
mkdir -p "$stage"
tar -C "$UC_REPO" --exclude=./tmp --exclude=./.git --exclude=./results \
	--exclude=./output_iso -cf - . | tar -C "$stage" -xf -
chown -R postgres: "$stage"

passed=0
failed=0
failed_suites=()

# capture CMD...: run CMD (interruptibly), print its output; sets $out and $rc
capture() {
	local log=$UC_CLUSTER/suite.log
	set +e
	uc_run --log "$log" "$@"
	rc=$?
	set -e
	out=$(cat "$log")
	printf '%s\n' "$out"
}

# Keep a failing suite's diffs where they outlive the cluster: tmp/ in the
# checkout (ignored by git)
keep_diffs() {
	local name=$1 f dest
	for f in "$stage/regression.diffs" "$stage/output_iso/regression.diffs"; do
		[ -s "$f" ] || continue
		echo "---- $f"
		cat "$f"
		mkdir -p "$UC_REPO/tmp"
		dest=$UC_REPO/tmp/$name.regression.diffs
		cp "$f" "$dest" && uc_log "diffs kept in $dest"
	done
}

# run_suite NAME CMD...: a pg_regress run, counted from its per-test lines
run_suite() {
	local name=$1 ok bad
	shift
	uc_log "suite: $name"
	capture "$@"
	ok=$(printf '%s\n' "$out" | grep -cE '^(ok|test) .* ok( |$)|^ok [0-9]+ ' || true)
	bad=$(printf '%s\n' "$out" | grep -cE 'FAILED|failed \(ignored\)|^not ok' || true)
	passed=$((passed + ok))
	failed=$((failed + bad))
	if [ "$rc" -ne 0 ]; then
		[ "$bad" -gt 0 ] || failed=$((failed + 1))
		failed_suites+=("$name")
		keep_diffs "$name"
	fi
	return 0
}

run_suite "pg_regress" uc_as_postgres make -C "$stage" -s installcheck \
	PG_CONFIG="$PG_CONFIG" ISOLATION=
run_suite "isolation" uc_as_postgres make -C "$stage" -s installcheck \
	PG_CONFIG="$PG_CONFIG" REGRESS=

# Django: Debian's python3-django and python3-psycopg2 live under /usr/bin/python3
# (the first python3 on PATH may be another interpreter without them).  The
# suite runs twice: against a database with the extension, and against one
# without it (the helper's SQL mode); tests of one mode are skipped in the
# other and not counted.
run_django() {
	local name=$1 ran bad skipped
	shift
	uc_log "suite: $name"
	capture uc_as_postgres env "$@" /usr/bin/python3 "$stage/python/tests/run_tests.py"
	ran=$(printf '%s\n' "$out" | awk '/^Ran [0-9]+ tests?/ { print $2 }')
	bad=$(printf '%s\n' "$out" | grep -cE '^(FAIL|ERROR):' || true)
	skipped=$(printf '%s\n' "$out" | grep -cE ' \.\.\. skipped ' || true)
	if [ -z "$ran" ]; then
		failed=$((failed + 1))
		failed_suites+=("$name (did not run)")
		return 0
	fi
	passed=$((passed + ran - bad - skipped))
	failed=$((failed + bad))
	[ "$rc" -eq 0 ] || failed_suites+=("$name")
}
run_django "django (extension mode)" UC_DJANGO_NO_EXTENSION=
run_django "django (SQL mode, no extension)" UC_DJANGO_NO_EXTENSION=1

# Reliability, short forms (make stress runs the long ones): a seeded fuzzer
# and load with an invariant under faults and DDL, in the three flush modes.
# Each prints "result: N checks passed, N checks failed" as its last line
# (not the form of make test's own closing line).
run_counted() {
	local name=$1 p f
	shift
	uc_log "suite: $name"
	capture "$@"
	p= f=
	read -r p f < <(printf '%s\n' "$out" | awk '/^result: [0-9]+ checks passed, [0-9]+ checks failed$/ { print $2, $5 }' | tail -1) || true
	if [ -z "${p:-}" ]; then
		failed=$((failed + 1))
		failed_suites+=("$name (did not finish)")
		return 0
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$rc" -eq 0 ] || failed_suites+=("$name")
}
uc_as_postgres createdb reliability
run_counted fuzz uc_as_postgres env PGDATABASE=reliability /usr/bin/python3 "$stage/tests/fuzz.py" --calls 3000
# Generated tables and calls, each through every path of the extension and
# as the plain statement, compared (outcomes, rows, logical decoding); a
# fixed seed, about a minute; make stress runs it long with a random seed
uc_as_postgres createdb differential
run_counted differential uc_as_postgres env PGDATABASE=differential /usr/bin/python3 "$stage/tests/differential.py"
run_counted "stress (statement)" uc_as_postgres env PGDATABASE=reliability /usr/bin/python3 "$stage/tests/stress.py" \
	--duration 12 --clients 32 --flush statement
run_counted "stress (commit)" uc_as_postgres env PGDATABASE=reliability /usr/bin/python3 "$stage/tests/stress.py" \
	--duration 12 --clients 32 --flush commit
run_counted "stress (background)" uc_as_postgres env PGDATABASE=reliability /usr/bin/python3 "$stage/tests/stress.py" \
	--duration 12 --clients 32 --flush background

# Sharding with PL/Proxy (plproxy/): shard and proxy databases on this
# cluster, reached over loopback connections.  Skipped, and reported, only
# where this system's apt has no PL/Proxy package for this version.
skipped_suites=()
if [ -n "${UC_PLPROXY_MISSING:-}" ]; then
	uc_log "suite: plproxy: SKIPPED, no package $UC_PLPROXY_MISSING for this system"
	skipped_suites+=("plproxy (no package $UC_PLPROXY_MISSING)")
else
	run_counted "plproxy" uc_as_postgres /usr/bin/python3 "$stage/tests/plproxy.py"
fi

# Dump/restore and pg_upgrade round trips (clusters of its own)
mkdir -p "$UC_CLUSTER/upgrade"
chown postgres: "$UC_CLUSTER/upgrade"
run_counted "dump and upgrade" env UC_PGBIN="$UC_PGBIN" UC_WORK="$UC_CLUSTER/upgrade" \
	bash "$stage/tests/upgrade.sh"

if grep -qE 'PANIC|server process .* was terminated by signal|TRAP:' "$UC_CLUSTER/server.log"; then
	echo "the server log shows a crash:" >&2
	grep -E 'PANIC|terminated by signal|TRAP:' "$UC_CLUSTER/server.log" >&2
	failed=$((failed + 1))
	failed_suites+=("server log")
fi

# the closing line is the last thing make test prints: stop the cluster first
uc_stop_cluster
echo
if [ "${#failed_suites[@]}" -gt 0 ]; then
	echo "failing: ${failed_suites[*]}"
fi
if [ "${#skipped_suites[@]}" -gt 0 ]; then
	echo "skipped: ${skipped_suites[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "${#failed_suites[@]}" -eq 0 ]
