# scripts/pgenv.sh: shared set-up for make test, make demo and make bench.
#
# Sourced, not run.  Provides:
#   uc_ensure_packages   install what is missing (apt, as root): the server,
#                        its client tools, the server headers and PGXS test
#                        tools, make, gcc, and the Python modules named
#   uc_run CMD           run CMD so that Ctrl-C / SIGTERM stop it at once
#   uc_build_install     build with PGXS and install into that PostgreSQL
#   uc_start_cluster     initdb + start a throwaway cluster as the postgres OS
#                        user, in a fresh directory under /tmp, on a private
#                        port, listening on a unix socket only; exports
#                        PGHOST, PGPORT, PGUSER, PGDATABASE, UC_CLUSTER
#   uc_stop_cluster      stop it and remove its directory (also on EXIT and
#                        on SIGINT/SIGTERM); UC_KEEP_CLUSTER=1 keeps the
#                        directory (data, server.log, the test tree) for a
#                        post-mortem.  UC_FSYNC=on runs it with fsync on.
#   uc_as_postgres CMD   run CMD as the postgres OS user with the PG* env
#
# The server refuses to run as root, so everything that touches it runs as
# the postgres OS user.  We only ever stop the server we started.

set -euo pipefail

UC_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UC_PGVER=${UC_PGVER:-15}
UC_PGBIN=/usr/lib/postgresql/$UC_PGVER/bin
export PG_CONFIG=${PG_CONFIG:-$UC_PGBIN/pg_config}
export DEBIAN_FRONTEND=noninteractive

uc_log() { printf '==> %s\n' "$*" >&2; }

# What each tool needs, checked by what it needs, never by a file another
# package happens to ship (on Debian, pg_config and pgxs.mk come with
# postgresql-client-15; the server headers only with postgresql-server-dev).
uc_pg_server_headers() {
	local inc
	[ -x "$PG_CONFIG" ] || return 1
	inc=$("$PG_CONFIG" --includedir-server 2>/dev/null) || return 1
	[ -f "$inc/postgres.h" ] && [ -f "$("$PG_CONFIG" --pgxs 2>/dev/null)" ]
}

uc_pg_isolation_tools() {
	local pgxs
	pgxs=$(dirname "$("$PG_CONFIG" --pgxs 2>/dev/null)")/../..
	[ -x "$pgxs/src/test/regress/pg_regress" ] &&
		[ -x "$pgxs/src/test/isolation/pg_isolation_regress" ] &&
		[ -x "$pgxs/src/test/isolation/isolationtester" ]
}

# uc_ensure_packages [python-module | plproxy ...]: install what is missing
# (apt, as root).  Python modules are checked by importing them with
# /usr/bin/python3; plproxy by its extension control file.  Where apt has
# no PL/Proxy package for this version at all, sets UC_PLPROXY_MISSING to
# its name instead of failing.
uc_ensure_packages() {
	local need=()
	[ -x "$UC_PGBIN/postgres" ] && [ -x "$UC_PGBIN/initdb" ] && [ -x "$UC_PGBIN/pg_ctl" ] ||
		need+=("postgresql-$UC_PGVER")
	[ -x "$UC_PGBIN/psql" ] && [ -x "$UC_PGBIN/pgbench" ] || need+=("postgresql-client-$UC_PGVER")
	if ! uc_pg_server_headers || ! uc_pg_isolation_tools; then
		need+=("postgresql-server-dev-$UC_PGVER")
	fi
	command -v make >/dev/null || need+=(make)
	command -v gcc >/dev/null || need+=(gcc)
	command -v runuser >/dev/null || need+=(util-linux)
	local m
	for m in "$@"; do
		if [ "$m" = plproxy ]; then
			[ -f "$("$PG_CONFIG" --sharedir 2>/dev/null)/extension/plproxy.control" ] ||
				need+=("postgresql-$UC_PGVER-plproxy")
			continue
		fi
		[ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import $m" >/dev/null 2>&1 && continue
		case $m in
			django) need+=(python3-django) ;;
			psycopg2) need+=(python3-psycopg2) ;;
			*) need+=("python3-$m") ;;
		esac
	done
	if [ "${#need[@]}" -gt 0 ]; then
		uc_log "installing ${need[*]}"
		if [ "$(id -u)" -ne 0 ]; then
			echo "missing packages: ${need[*]}; run as root, or install them first (apt-get install ${need[*]})" >&2
			return 1
		fi
		apt-get update -qq </dev/null
		# A PostgreSQL version without a PL/Proxy package in this system's
		# suite: the rest is installed, and UC_PLPROXY_MISSING names the
		# package (make test then skips PL/Proxy and says so)
		local p keep=()
		for p in "${need[@]}"; do
			if [[ $p == postgresql-*-plproxy ]] &&
				! grep -q '^ *Candidate: [^(]' <<<"$(apt-cache policy "$p" 2>/dev/null)"; then
				UC_PLPROXY_MISSING=$p
				uc_log "no package $p here: PL/Proxy cannot be tested on PostgreSQL $UC_PGVER"
				continue
			fi
			keep+=("$p")
		done
		need=("${keep[@]}")
		[ "${#need[@]}" -eq 0 ] || apt-get install -y -qq "${need[@]}" </dev/null >/dev/null
		uc_pg_server_headers || { echo "postgres.h still missing after installing ${need[*]}" >&2; return 1; }
	fi
	id postgres >/dev/null 2>&1 || { echo "no postgres OS user" >&2; return 1; }
}

uc_build_install() {
	uc_log "building and installing upsert_counter"
	make -C "$UC_REPO" -s PG_CONFIG="$PG_CONFIG" >/dev/null
	make -C "$UC_REPO" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# runuser keeps the working directory, which postgres may not be allowed to
# enter (a checkout under /root): every call runs from the cluster directory.
uc_runuser() {
	(cd "${UC_CLUSTER:-/}" && exec runuser -u postgres -- "$@")
}

uc_as_postgres() {
	uc_runuser env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres \
		PGDATABASE="${PGDATABASE:-postgres}" PATH="$UC_PGBIN:$PATH" "$@"
}

# uc_run [--log FILE] CMD...: run CMD in the background and wait for it, so
# that the INT/TERM trap runs at once rather than when CMD ends (bash defers
# traps while a foreground command runs).  With --log, CMD's output goes to
# FILE (the redirection is CMD's alone, so the trap still reaches our own
# stderr).
uc_run() {
	if [ "$1" = --log ]; then
		local log=$2
		shift 2
		"$@" >"$log" 2>&1 &
	else
		"$@" &
	fi
	wait $!
}

# SIGINT/SIGTERM: end every process this script started (its whole tree:
# runuser, make, pg_regress, python), then exit; the EXIT trap stops the
# cluster.
uc_kill_tree() {
	local child
	for child in $(pgrep -P "$1" 2>/dev/null); do
		uc_kill_tree "$child"
	done
	kill -TERM "$1" 2>/dev/null || true
}

uc_interrupted() {
	trap '' INT TERM
	uc_log "interrupted: stopping what this run started"
	local child
	for child in $(pgrep -P $$ 2>/dev/null); do
		uc_kill_tree "$child"
	done
	exit 130
}

uc_free_port() {
	local port
	for port in $(seq 54320 54399); do
		if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null &&
			[ ! -e "/tmp/.s.PGSQL.$port" ]; then
			echo "$port"
			return
		fi
	done
	echo "no free port in 54320-54399" >&2
	return 1
}

# uc_start_cluster [extra postgresql.conf lines...]
uc_start_cluster() {
	UC_CLUSTER=$(mktemp -d /tmp/upsert_counter.XXXXXX)
	chown postgres: "$UC_CLUSTER"
	chmod 755 "$UC_CLUSTER"
	export UC_CLUSTER
	export PGPORT=$(uc_free_port)
	export PGHOST=$UC_CLUSTER
	export PGUSER=postgres
	export PGDATABASE=postgres
	trap uc_stop_cluster EXIT
	trap uc_interrupted INT TERM
	uc_log "starting a throwaway cluster in $UC_CLUSTER/data on port $PGPORT"
	uc_runuser "$UC_PGBIN/initdb" -D "$UC_CLUSTER/data" -A trust \
		-E UTF8 --locale=C.UTF-8 >"$UC_CLUSTER/initdb.log" 2>&1 ||
		{ cat "$UC_CLUSTER/initdb.log"; return 1; }
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$UC_CLUSTER'"
		echo "port = $PGPORT"
		echo "fsync = ${UC_FSYNC:-off}"
		echo "max_prepared_transactions = 10"
		echo "log_line_prefix = '%m [%p] '"
		local line
		for line in "$@"; do echo "$line"; done
	} >>"$UC_CLUSTER/data/postgresql.conf"
	uc_runuser "$UC_PGBIN/pg_ctl" -D "$UC_CLUSTER/data" \
		-l "$UC_CLUSTER/server.log" -w -t 60 start >/dev/null ||
		{ cat "$UC_CLUSTER/server.log"; return 1; }
}

# uc_bench_db [postgresql.conf lines...]: what the benchmarks start from:
# packages, the build, a throwaway cluster and its "bench" database with
# the wagtail hourly log (bench/sql/setup.sql)
uc_bench_db() {
	uc_ensure_packages
	uc_build_install
	uc_start_cluster "$@"
	uc_as_postgres createdb bench
	uc_as_postgres psql -X -q -v ON_ERROR_STOP=1 -d bench -f - \
		<"$UC_REPO/bench/sql/setup.sql" >/dev/null 2>&1
}

uc_stop_cluster() {
	if [ -n "${UC_CLUSTER:-}" ] && [ -d "$UC_CLUSTER/data" ]; then
		uc_log "stopping the throwaway cluster"
		uc_runuser "$UC_PGBIN/pg_ctl" -D "$UC_CLUSTER/data" -m fast \
			-w stop >/dev/null 2>&1 || true
		if [ "${UC_KEEP_CLUSTER:-}" = "" ]; then
			rm -rf "$UC_CLUSTER"
		else
			uc_log "kept $UC_CLUSTER (UC_KEEP_CLUSTER is set)"
		fi
	fi
	UC_CLUSTER=
}
