#!/usr/bin/env bash
# make test-all: make test (scripts/test.sh, every suite) on other PostgreSQL
# major versions, each in a Debian minbase chroot, as root:
#
#   PostgreSQL 17   Debian trixie
#   PostgreSQL 18   Debian forky (set up with debootstrap's sid script)
#
#   scripts/matrix.sh           set up what is missing, then run
#   scripts/matrix.sh --setup   only set the chroots up (or check them)
#
# Settings (environment):
#   UC_MATRIX="17 18"      the versions to run, in this order
#   UC_SUITE_<NN>=suite    the Debian suite for version NN (one version a suite)
#   UC_CHROOT_CACHE=DIR    where the chroots are kept, one directory a suite
#                          (default /var/cache/upsert_counter/chroots)
#   UC_MIRROR=URL          the Debian mirror (default: the one this machine's
#                          apt uses for its own suite)
#   UC_CHROOT_REBUILD=1    set every chroot used up from scratch
#   UC_FSYNC, UC_KEEP_CLUSTER  passed on to make test inside
#
# A chroot is set up once (debootstrap --variant=minbase, then the packages
# make test needs for that version, PL/Proxy where the suite has it) and
# kept; <suite>.ready beside it records that the set-up finished, so an
# interrupted one is redone from scratch, never half-used.  Each run copies
# the working tree fresh (git's tracked and untracked-but-not-ignored files,
# uncommitted changes included) to /build/upsert_counter inside, mounts
# /proc, /sys, /dev, /dev/pts and a fresh /dev/shm, runs make test there as
# root with a clean environment, and unmounts again, also on error and on
# SIGINT/SIGTERM (the mounts live in a private mount namespace too, so not
# even SIGKILL leaves them on the host).  The host's apt sources are never
# touched; only debootstrap (a bookworm package) is installed on the host.
#
# Output: each version's make test output, every line prefixed [pgNN]; its
# log and any failing suite's regression.diffs are kept in tmp/matrix/ in the
# checkout.  Then a summary, and the closing line "N passed, N failed"
# summed over the versions run, where a version whose make test printed no
# closing line of its own (a failed build, say) counts as one failure.
# Exits non-zero on any failure.
set -euo pipefail

UC_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UC_MATRIX=${UC_MATRIX:-"17 18"}
UC_CHROOT_CACHE=${UC_CHROOT_CACHE:-/var/cache/upsert_counter/chroots}
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

uc_log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'matrix: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, mount, chroot)"

# The mounts go into a private mount namespace, so that they vanish with
# this script whatever happens; they are unmounted by hand as well.
if [ -z "${UC_MATRIX_NS:-}" ] && command -v unshare >/dev/null &&
	unshare --mount --propagation private true 2>/dev/null; then
	export UC_MATRIX_NS=1
	exec unshare --mount --propagation private -- bash "$0" "$@"
fi

suite_for() {	# suite_for NN
	local var=UC_SUITE_$1
	if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
	case $1 in
		17) echo trixie ;;
		18) echo forky ;;
		*) die "no Debian suite known for PostgreSQL $1 (set UC_SUITE_$1)" ;;
	esac
}

# The mirror this machine's apt uses for its own suite (deb822 .sources or
# one-line .list files); Debian's own when none is found.
mirror() {
	if [ -n "${UC_MIRROR:-}" ]; then echo "${UC_MIRROR%/}"; return; fi
	local codename url=
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	shopt -s nullglob
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		url=$(awk -v want="$codename" 'BEGIN { RS = ""; FS = "\n" }
			{
				types = uris = suites = ""; enabled = "yes"
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Types:/) types = " " substr($i, 7) " "
					else if ($i ~ /^URIs:/) uris = substr($i, 6)
					else if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
					else if ($i ~ /^Enabled:/) enabled = substr($i, 9)
				}
				gsub(/[ \t]+/, " ", suites); gsub(/[ \t]+/, " ", types)
				if (enabled ~ /no/ || types !~ / deb / || suites !~ (" " want " ")) next
				split(uris, u, " "); print u[1]; exit
			}' "$f")
		[ -n "$url" ] && break
	done
	if [ -z "$url" ]; then
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -f "$f" ] || continue
			url=$(awk -v want="$codename" '$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i + 1) == want) { print $i; exit }
			}' "$f")
			[ -n "$url" ] && break
		done
	fi
	shopt -u nullglob
	url=${url:-http://deb.debian.org/debian}
	echo "${url%/}"
}

packages_for() {	# packages_for NN: what make test needs, PL/Proxy aside
	echo "postgresql-$1 postgresql-client-$1 postgresql-server-dev-$1" \
		"make gcc libc6-dev python3 python3-django python3-psycopg2" \
		"util-linux procps ca-certificates"
}

# ---- the chroot and its mounts -------------------------------------------

CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

in_chroot() {	# in_chroot DIR CMD...: CMD inside DIR, as root, clean environment
	local dir=$1
	shift
	chroot "$dir" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
		TERM=dumb DEBIAN_FRONTEND=noninteractive "$@" </dev/null
}

mounts_under() {	# mount points at or under DIR, deepest first
	awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

MOUNTED=()
mount_chroot() {	# mount_chroot DIR
	local dir=$1
	[ -z "$(mounts_under "$dir")" ] || die "something is already mounted under $dir"
	# (a failing mount ends the script; the EXIT trap unmounts the others)
	mount -t proc proc "$dir/proc"
	MOUNTED+=("$dir/proc")
	mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$dir/sys" 2>/dev/null ||
		mount --bind /sys "$dir/sys"
	MOUNTED+=("$dir/sys")
	mount --bind /dev "$dir/dev"
	MOUNTED+=("$dir/dev")
	# never let a mount below propagate back to the host's /dev
	mount --make-private "$dir/dev"
	mount --bind /dev/pts "$dir/dev/pts"
	MOUNTED+=("$dir/dev/pts")
	# a /dev/shm of its own (PostgreSQL's dynamic shared memory)
	mount -t tmpfs -o mode=1777,nosuid,nodev shm "$dir/dev/shm"
	MOUNTED+=("$dir/dev/shm")
	cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
}

# PIDs of the processes whose root is DIR (what runs inside this chroot)
chroot_pids() {
	local dir=$1 p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$dir" ] && echo "${p#/proc/}"
	done
	return 0
}

# Stop what still runs inside DIR: give it WAIT seconds to end by itself
# (make test stops its own cluster on SIGTERM), then SIGTERM, then SIGKILL.
# Only processes rooted in our chroot, which only this run uses (the lock).
empty_chroot() {
	local dir=$1 wait=${2:-0} i pids
	for ((i = 0; i < wait * 2; i++)); do
		[ -n "$(chroot_pids "$dir")" ] || return 0
		sleep 0.5
	done
	pids=$(chroot_pids "$dir")
	[ -n "$pids" ] || return 0
	uc_log "stopping processes left in $dir: $(echo $pids)"
	kill -TERM $pids 2>/dev/null || true
	for ((i = 0; i < 20; i++)); do
		[ -n "$(chroot_pids "$dir")" ] || return 0
		sleep 0.5
	done
	pids=$(chroot_pids "$dir")
	[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
	sleep 0.5
}

umount_chroot() {	# umount_chroot DIR
	local dir=$1 m i
	empty_chroot "$dir" 0
	for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
		m=${MOUNTED[i]}
		umount "$m" 2>/dev/null || umount -l "$m" || true
	done
	MOUNTED=()
	for m in $(mounts_under "$dir"); do	# anything else (should be none)
		umount "$m" 2>/dev/null || umount -l "$m" || true
	done
	if [ -n "$(mounts_under "$dir")" ]; then
		echo "matrix: still mounted under $dir: $(mounts_under "$dir" | tr '\n' ' ')" >&2
		return 1
	fi
}

# end every process in this tree (children first)
kill_tree() {
	local child
	for child in $(pgrep -P "$1" 2>/dev/null); do
		kill_tree "$child"
	done
	kill -TERM "$1" 2>/dev/null || true
}

# ---- state for the traps ----------------------------------------------------

CUR_DIR=	# the chroot in use (mounted, or being set up)
CHILD=	# what runs in it
TAILER=	# what shows its log
SENTINEL=	# the log is followed until this process ends
LOCK_FD=

finish() {
	local rc=$?
	trap '' INT TERM
	if [ -n "$CHILD" ]; then
		kill_tree "$CHILD"
		wait "$CHILD" 2>/dev/null || true
	fi
	if [ -n "$CUR_DIR" ]; then
		# make test stops its own cluster on SIGTERM: give it time to
		empty_chroot "$CUR_DIR" 60
		stop_tailer
		umount_chroot "$CUR_DIR" || rc=1
	fi
	stop_tailer
	exit "$rc"
}

# show LOG as it grows, each line prefixed, until stop_tailer
start_tailer() {	# start_tailer LOG PREFIX
	# (ends by itself with this script, should it be killed outright)
	bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 0.5; done' sentinel $$ &
	SENTINEL=$!
	tail -n +1 -f --pid="$SENTINEL" "$1" | sed -u "s/^/$2 /" &
	TAILER=$!
}

# the rest of the log, then stop (tail reads to the end once SENTINEL is gone)
stop_tailer() {
	[ -n "$SENTINEL" ] || return 0
	kill "$SENTINEL" 2>/dev/null || true
	wait "$SENTINEL" 2>/dev/null || true
	wait "$TAILER" 2>/dev/null || true
	SENTINEL="" TAILER=""
}

interrupted() {
	trap '' INT TERM
	uc_log "interrupted: stopping what this run started and unmounting"
	if [ -n "$CHILD" ]; then
		kill_tree "$CHILD"
	fi
	exit "$1"
}

trap finish EXIT
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

# bg LOG CMD...: run CMD with its output in LOG, in the background, and wait
# for it, so that INT/TERM are handled at once; returns CMD's status
bg() {
	local log=$1 rc
	shift
	"$@" >"$log" 2>&1 </dev/null &
	CHILD=$!
	set +e
	wait "$CHILD"
	rc=$?
	set -e
	CHILD=
	return "$rc"
}

lock_suite() {	# hold CACHE/<suite>.lock while a chroot is used
	local suite=$1
	exec {LOCK_FD}>"$UC_CHROOT_CACHE/$suite.lock"
	if ! flock -n "$LOCK_FD"; then
		uc_log "waiting for another run using the $suite chroot"
		flock -w 3600 "$LOCK_FD" || die "the $suite chroot stayed busy"
	fi
}

unlock_suite() {
	[ -z "$LOCK_FD" ] || exec {LOCK_FD}>&-
	LOCK_FD=
}

# ---- set-up ------------------------------------------------------------------

ensure_debootstrap() {
	command -v debootstrap >/dev/null && return
	uc_log "installing debootstrap on the host"
	apt-get update -qq </dev/null
	apt-get install -y -qq debootstrap </dev/null >/dev/null
}

# the set-up's recipe: a chroot whose stamp holds another one is redone
recipe() {	# recipe NN SUITE MIRROR
	printf 'recipe 2\nsuite %s\nmirror %s\npostgresql %s\npackages %s\n' \
		"$2" "$3" "$1" "$(packages_for "$1")"
}

setup_chroot() {	# setup_chroot NN SUITE DIR
	local v=$1 suite=$2 dir=$3 url stamp log script="" plproxy t0 m avail
	url=$(mirror)
	stamp=$UC_CHROOT_CACHE/$suite.ready
	log=$UC_CHROOT_CACHE/$suite.setup.log
	if [ -f "$stamp" ] && [ -z "${UC_CHROOT_REBUILD:-}" ] &&
		[ "$(sed -n '1,/^packages /p' "$stamp")" = "$(recipe "$v" "$suite" "$url")" ]; then
		return 0
	fi
	t0=$SECONDS
	rm -f "$stamp"
	if [ -e "$dir" ]; then
		uc_log "[pg$v] removing the unfinished or outdated $suite chroot"
		for m in $(mounts_under "$dir"); do umount "$m" 2>/dev/null || umount -l "$m"; done
		[ -z "$(mounts_under "$dir")" ] || die "cannot unmount everything under $dir"
		rm -rf --one-file-system "$dir"
	fi
	avail=$(df -Pk "$UC_CHROOT_CACHE" | awk 'NR == 2 { print int($4 / 1024 / 1024) }')
	[ "$avail" -ge 3 ] || die "only ${avail} GiB free under $UC_CHROOT_CACHE; a chroot needs about 1.5"
	ensure_debootstrap
	[ -e "/usr/share/debootstrap/scripts/$suite" ] || script=/usr/share/debootstrap/scripts/sid
	uc_log "[pg$v] debootstrap --variant=minbase $suite from $url (log: $log)"
	CUR_DIR=$dir
	if ! bg "$log" debootstrap --variant=minbase "$suite" "$dir" "$url" ${script:+"$script"}; then
		tail -n 30 "$log" >&2
		die "debootstrap $suite failed (log: $log)"
	fi
	uc_log "[pg$v] debootstrap took $((SECONDS - t0)) s"
	echo "deb $url $suite main" >"$dir/etc/apt/sources.list"
	cat >"$dir/etc/apt/apt.conf.d/99upsert-counter" <<-'EOF'
		// upsert_counter's test chroot: a testing suite's Release may be past
		// its Valid-Until; no translations; no fsync in dpkg (a set-up cut
		// short is redone from scratch anyway)
		Acquire::Check-Valid-Until "false";
		Acquire::Languages "none";
		DPkg::Options { "--force-unsafe-io"; };
	EOF
	# no daemons started by package scripts inside the chroot
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 755 "$dir/usr/sbin/policy-rc.d"
	# no "main" cluster created at install time: make test makes its own
	mkdir -p "$dir/etc/postgresql-common/createcluster.d"
	echo "create_main_cluster = false" \
		>"$dir/etc/postgresql-common/createcluster.d/upsert_counter.conf"
	mount_chroot "$dir"
	t0=$SECONDS
	uc_log "[pg$v] installing $(packages_for "$v") in the $suite chroot"
	bg "$log.apt" in_chroot "$dir" apt-get update -qq ||
		{ cat "$log.apt" >&2; die "apt-get update in the $suite chroot failed"; }
	# (not piped into grep -q: under pipefail its early exit reads as "none")
	if grep -q '^ *Candidate: [^(]' \
		<<<"$(in_chroot "$dir" apt-cache policy "postgresql-$v-plproxy" 2>/dev/null)"; then
		plproxy=postgresql-$v-plproxy
	else
		plproxy=
		uc_log "[pg$v] $suite has no postgresql-$v-plproxy package: make test will skip PL/Proxy there"
	fi
	# shellcheck disable=SC2046
	bg "$log.apt" in_chroot "$dir" apt-get install -y -q $(packages_for "$v") $plproxy ||
		{ tail -n 40 "$log.apt" >&2; die "package install in the $suite chroot failed (log: $log.apt)"; }
	cat "$log.apt" >>"$log" && rm -f "$log.apt"
	in_chroot "$dir" apt-get clean
	umount_chroot "$dir"
	CUR_DIR=
	uc_log "[pg$v] package install took $((SECONDS - t0)) s"
	{
		recipe "$v" "$suite" "$url"
		echo "plproxy ${plproxy:-none}"
		in_chroot "$dir" dpkg-query -W -f '${Package} ${Version}\n' "postgresql-$v" \
			python3 python3-django python3-psycopg2 gcc $plproxy 2>/dev/null | sed 's/^/version /'
		echo "finished $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$stamp.new"
	mv "$stamp.new" "$stamp"
}

# Copy the working tree into DIR/build/upsert_counter, fresh: what git
# tracks plus untracked files it does not ignore, as they are on disk (build
# products, results/, tmp/ and .git stay out)
copy_tree() {
	local dest=$1/build/upsert_counter
	rm -rf --one-file-system "$dest"
	mkdir -p "$dest"
	if git -C "$UC_REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		(
			cd "$UC_REPO"
			git ls-files -z -co --exclude-standard |
				while IFS= read -r -d '' f; do
					# a tracked file deleted in the working tree stays out
					if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
				done |
				tar --null --no-recursion -T - -cf -
		) | tar -C "$dest" -xf -
	else
		tar -C "$UC_REPO" --exclude=./.git --exclude=./tmp --exclude=./results \
			--exclude=./output_iso --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
			-cf - . | tar -C "$dest" -xf -
	fi
}

# ---- one version ---------------------------------------------------------------

total_passed=0
total_failed=0
summary=()
OUT=$UC_REPO/tmp/matrix

run_version() {	# run_version NN
	local v=$1 suite dir log rc p f t0 line errors skipped failing
	suite=$(suite_for "$v")
	mkdir -p "$UC_CHROOT_CACHE"
	dir=$(realpath -m "$UC_CHROOT_CACHE/$suite")
	echo
	echo "======== PostgreSQL $v (Debian $suite chroot: $dir) ========"
	lock_suite "$suite"
	t0=$SECONDS
	setup_chroot "$v" "$suite" "$dir"
	# what an interrupted run may have left: nobody else uses it (the lock)
	rm -rf "$dir"/tmp/upsert_counter.* "$dir"/tmp/.s.PGSQL.* 2>/dev/null || true
	# and what the last run installed: a file since removed from the tree
	# (an old upgrade script, say) must not linger
	rm -rf "$dir/usr/share/postgresql/$v/extension"/upsert_counter[.-]* \
		"$dir/usr/lib/postgresql/$v/lib"/upsert_counter.so \
		"$dir/usr/lib/postgresql/$v/lib/bitcode"/upsert_counter*
	copy_tree "$dir"
	CUR_DIR=$dir
	mount_chroot "$dir"
	rm -rf "$OUT/pg$v"
	mkdir -p "$OUT/pg$v"
	log=$OUT/pg$v.log
	uc_log "[pg$v] make test in the $suite chroot (log: $log)"
	: >"$log"
	in_chroot "$dir" UC_PGVER="$v" PG_CONFIG="/usr/lib/postgresql/$v/bin/pg_config" \
		${UC_FSYNC:+UC_FSYNC="$UC_FSYNC"} ${UC_KEEP_CLUSTER:+UC_KEEP_CLUSTER="$UC_KEEP_CLUSTER"} \
		bash -c 'cd /build/upsert_counter && make test' >"$log" 2>&1 &
	CHILD=$!
	start_tailer "$log" "[pg$v]"
	set +e
	wait "$CHILD"
	rc=$?
	set -e
	CHILD=
	empty_chroot "$dir" 10
	stop_tailer
	umount_chroot "$dir"
	CUR_DIR=
	# failing suites' diffs (make test keeps them in tmp/ of its tree)
	cp "$dir"/build/upsert_counter/tmp/*.regression.diffs "$OUT/pg$v/" 2>/dev/null || true
	unlock_suite

	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
	failing=$(grep -E '^failing: ' "$log" | tail -n 1 || true)
	skipped=$(grep -E '^skipped: ' "$log" | tail -n 1 || true)
	if [ -n "$line" ]; then
		read -r p _ f _ <<<"${line//,/}"
		[ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
		summary+=("pg$v ($suite): $p passed, $f failed${failing:+; ${failing}}${skipped:+; ${skipped}}")
	else
		p=0 f=1
		errors=$(grep -E 'error:|: cannot find |undefined reference|^make(\[[0-9]+\])?: \*\*\*' "$log" |
			head -n 8 || true)
		summary+=("pg$v ($suite): make test ended (exit $rc) without its closing line: counted as 1 failure")
		if [ -n "$errors" ]; then
			while IFS= read -r e; do summary+=("    $e"); done <<<"$errors"
		fi
	fi
	if compgen -G "$OUT/pg$v/*.regression.diffs" >/dev/null; then
		summary+=("    diffs: $(echo "$OUT/pg$v"/*.regression.diffs)")
	fi
	summary+=("    log: $log ($((SECONDS - t0)) s)")
	total_passed=$((total_passed + p))
	total_failed=$((total_failed + f))
}

if [ "${1:-}" = --setup ]; then	# set the chroots up (or check them), run nothing
	for v in $UC_MATRIX; do
		suite=$(suite_for "$v")
		mkdir -p "$UC_CHROOT_CACHE"
		lock_suite "$suite"
		setup_chroot "$v" "$suite" "$(realpath -m "$UC_CHROOT_CACHE/$suite")"
		unlock_suite
		echo "pg$v: $UC_CHROOT_CACHE/$suite is ready"
	done
	exit 0
fi

for v in $UC_MATRIX; do
	run_version "$v"
done

echo
echo "======== make test-all ========"
for line in "${summary[@]}"; do
	# no line but the last may look like a closing line
	printf '  %s\n' "${line/passed, /passed; }"
done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
