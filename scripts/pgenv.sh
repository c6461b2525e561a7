# scripts/pgenv.sh: shared set-up for make test, make demo and make bench.
#
# Sourced, not run.  Provides:
#   uc_ensure_packages   install PostgreSQL 15 server + PGXS if missing (apt)
#   uc_build_install     build with PGXS and install into that PostgreSQL
#   uc_start_cluster     initdb + start a throwaway cluster as the postgres OS
#                        user, in a fresh directory under /tmp, on a private
#                        port, listening on a unix socket only; exports
#                        PGHOST, PGPORT, PGUSER, PGDATABASE, UC_CLUSTER
#   uc_stop_cluster      stop it and remove its directory (also on EXIT)
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

uc_ensure_packages() {
	local need=()
	[ -x "$UC_PGBIN/postgres" ] || need+=("postgresql-$UC_PGVER")
	if [ ! -x "$PG_CONFIG" ] || [ ! -f "$("$PG_CONFIG" --pgxs 2>/dev/null)" ]; then
		need+=("postgresql-server-dev-$UC_PGVER")
	fi
	command -v make >/dev/null || need+=(make)
	command -v gcc >/dev/null || need+=(gcc)
	command -v runuser >/dev/null || need+=(util-linux)
	if [ "$#" -gt 0 ]; then
		local p
		for p in "$@"; do
			dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
		done
	fi
	if [ "${#need[@]}" -gt 0 ]; then
		uc_log "installing ${need[*]}"
		if [ "$(id -u)" -ne 0 ]; then
			echo "missing packages: ${need[*]}; run as root or install them" >&2
			return 1
		fi
		apt-get update -qq </dev/null
		apt-get install -y -qq "${need[@]}" </dev/null >/dev/null
	fi
	id postgres >/dev/null 2>&1 || { echo "no postgres OS user" >&2; return 1; }
}

uc_build_install() {
	uc_log "building and installing upsert_counter"
	make -C "$UC_REPO" -s PG_CONFIG="$PG_CONFIG" >/dev/null
	make -C "$UC_REPO" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

uc_as_postgres() {
	runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres \
		PGDATABASE="${PGDATABASE:-postgres}" PATH="$UC_PGBIN:$PATH" "$@"
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
	uc_log "starting a throwaway cluster in $UC_CLUSTER/data on port $PGPORT"
	runuser -u postgres -- "$UC_PGBIN/initdb" -D "$UC_CLUSTER/data" -A trust \
		-E UTF8 --locale=C.UTF-8 >"$UC_CLUSTER/initdb.log" 2>&1 ||
		{ cat "$UC_CLUSTER/initdb.log"; return 1; }
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$UC_CLUSTER'"
		echo "port = $PGPORT"
		echo "fsync = off"
		echo "max_prepared_transactions = 10"
		echo "log_line_prefix = '%m [%p] '"
		local line
		for line in "$@"; do echo "$line"; done
	} >>"$UC_CLUSTER/data/postgresql.conf"
	runuser -u postgres -- "$UC_PGBIN/pg_ctl" -D "$UC_CLUSTER/data" \
		-l "$UC_CLUSTER/server.log" -w -t 60 start >/dev/null ||
		{ cat "$UC_CLUSTER/server.log"; return 1; }
}

uc_stop_cluster() {
	if [ -n "${UC_CLUSTER:-}" ] && [ -d "$UC_CLUSTER/data" ]; then
		uc_log "stopping the throwaway cluster"
		runuser -u postgres -- "$UC_PGBIN/pg_ctl" -D "$UC_CLUSTER/data" -m fast \
			-w stop >/dev/null 2>&1 || true
		if [ "${UC_KEEP_CLUSTER:-}" = "" ]; then
			rm -rf "$UC_CLUSTER"
		else
			uc_log "kept $UC_CLUSTER (UC_KEEP_CLUSTER is set)"
		fi
	fi
	UC_CLUSTER=
}
