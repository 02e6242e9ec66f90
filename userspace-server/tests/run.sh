#!/bin/bash
# Test suite of the passthrough FUSE server.
#
#   tests/run.sh [--valgrind] [--transport dev|uring]
#
# Runs as root on the host or in a VM guest: mounts a tmpfs SOURCE in a
# mktemp dir, mounts the server over it and checks data integrity (cmp,
# dd, fio verify=crc32c), metadata operations, tar / cp -a / cc on the
# mount, option errors, signals and the in-flight statistics.  Output is
# TAP-like ("ok N - name" / "not ok N - name", diagnostics as "# ..."),
# closed by one line "N passed, N failed, N skipped"; the exit status is
# non-zero when anything failed.
#
# --transport uring runs every server with --transport uring (FUSE-over-
# io_uring: Linux 6.14+ with CONFIG_FUSE_IO_URING, e.g. the 7.3 test
# guest); the suite sets the fuse module parameter enable_uring=Y for its
# run and puts the old value back.  Default: dev (/dev/fuse).
#
# --valgrind runs every server under valgrind (memcheck, definite and
# indirect leaks are errors, --error-exitcode=99) and fails a test whose
# server reports errors.
#
# Environment: PASSTHROUGH=path overrides the server binary (default
# ../passthrough, built with make when missing); PT_ONLY=REGEX runs only
# the tests whose name matches.  Needs: fio for the fio
# tests, cc for the compile test, unshare for the no-/dev/fuse test; tests
# whose tool is missing are skipped.  PT_TEST_LIMIT=SECONDS: the watchdog
# of each test (default 600).

# "cmd && check || fail" is meant: fail when either part fails.
# shellcheck disable=SC2015
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SRV=${PASSTHROUGH:-$HERE/../passthrough}
VALGRIND=0
TRANSPORT=dev

while [ $# -gt 0 ]; do
	case $1 in
	--valgrind) VALGRIND=1 ;;
	--transport)
		case ${2:-} in
		dev|uring) TRANSPORT=$2; shift ;;
		*) echo "run.sh: --transport dev|uring, not '${2:-}'" >&2; exit 2 ;;
		esac ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
URING_PARAM=/sys/module/fuse/parameters/enable_uring

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: must run as root (mounts tmpfs and FUSE)" >&2
	exit 2
fi
# Bring the binary up to date when we can build it (not needed in a guest
# that was handed a built tree).
if [ -z "${PASSTHROUGH:-}" ] && command -v make >/dev/null && command -v cc >/dev/null; then
	make -s -C "$HERE/.." >/dev/null || { echo "run.sh: build failed" >&2; exit 2; }
fi
if [ ! -x "$SRV" ]; then
	echo "run.sh: no server binary at $SRV" >&2
	exit 2
fi
SRV=$(cd "$(dirname "$SRV")" && pwd)/$(basename "$SRV")	# we cd later
if [ $VALGRIND = 1 ] && ! command -v valgrind >/dev/null; then
	echo "run.sh: valgrind not installed" >&2
	exit 2
fi

WORK=$(mktemp -d /tmp/pt-tests.XXXXXX)
SRC=$WORK/src
MNT=$WORK/mnt
SCR=$WORK/scratch	# per-test scratch space outside the mount
STATS=$WORK/stats.json
LOG=$WORK/server.log
mkdir "$SRC" "$MNT" "$SCR" "$WORK/vg"

SRV_PID=		# server of the running test (set in the test's subshell)
PASS=0 FAIL=0 SKIP=0 N=0

cleanup() {
	local pid
	pid=$(cat "$WORK/srv.pid" 2>/dev/null)
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		sleep 1
		kill -KILL "$pid" 2>/dev/null
	fi
	if mountpoint -q "$MNT"; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
	fi
	mountpoint -q "$SRC" && umount -l "$SRC"
	[ -n "${URING_OLD:-}" ] && echo "$URING_OLD" >"$URING_PARAM"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# tools that drop files in the current directory (fio) drop them here
cd "$WORK" || exit 2

URING_OLD=
if [ $TRANSPORT = uring ]; then
	if [ ! -e "$URING_PARAM" ]; then
		echo "run.sh: --transport uring: no $URING_PARAM (kernel without CONFIG_FUSE_IO_URING, or fuse not loaded)" >&2
		exit 2
	fi
	URING_OLD=$(cat "$URING_PARAM")
	echo Y >"$URING_PARAM" || { echo "run.sh: cannot enable FUSE-over-io_uring" >&2; exit 2; }
	echo "# transport: uring (enable_uring was $URING_OLD)"
fi

if ! mount -t tmpfs -o size=512m pt-test-src "$SRC"; then
	echo "run.sh: cannot mount tmpfs on $SRC" >&2
	exit 2
fi

# ---- harness ----------------------------------------------------------

# t NAME CMD...: runs CMD (a shell function) in a subshell and reports
# it; what CMD prints becomes "# " diagnostics when it fails.  Inside CMD,
# fail MSG / skip REASON end the test; a server it left running is
# stopped by the subshell's EXIT trap.
t() {
	local name=$1 rc wd start=$SECONDS
	shift
	[[ -z ${PT_ONLY:-} || $name =~ $PT_ONLY ]] || return 0
	rm -f "$WORK/watchdog" "$WORK/srv.pid"
	watchdog &
	wd=$!
	(
		trap 'if [ -n "$SRV_PID" ]; then stop >/dev/null 2>&1; fi' EXIT
		"$@"
	) >"$WORK/out" 2>&1
	rc=$?
	kill "$wd" 2>/dev/null
	wait "$wd" 2>/dev/null
	[ -e "$WORK/watchdog" ] && { cat "$WORK/watchdog" >>"$WORK/out"; rc=1; }
	N=$((N + 1))
	if [ $rc = 0 ]; then
		PASS=$((PASS + 1))
		echo "ok $N - $name"
		grep '^observed:' "$WORK/out" | sed 's/^/# /'
	elif [ $rc = 77 ]; then
		SKIP=$((SKIP + 1))
		echo "ok $N - $name # SKIP $(tail -n 1 "$WORK/out")"
	else
		FAIL=$((FAIL + 1))
		echo "not ok $N - $name"
		tail -n 25 "$WORK/out" | sed 's/^/# /'
	fi
	# where a slow (guest) run spends its time
	echo "# $((SECONDS - start)) s"
	# /proc/self/mounts, not mountpoint(1): in a guest, after the watchdog
	# killed a server, the next test still found its dead mount there
	grep -q " $MNT " /proc/self/mounts && umount -l "$MNT"
	# every test starts from an empty SOURCE and scratch dir
	find "$SRC" "$SCR" -mindepth 1 -delete
	return 0
}

# A hung server must not hang the suite: after TEST_LIMIT seconds the
# watchdog kills it, which fails every request still pending on the mount.
# Generous: readdir of 1500 entries took over 120 s on a debug kernel
# under TCG with CPU steal.
TEST_LIMIT=${PT_TEST_LIMIT:-600}
[ $VALGRIND = 1 ] && TEST_LIMIT=900
watchdog() {
	local sp
	trap 'kill $sp 2>/dev/null; exit 0' TERM
	sleep $TEST_LIMIT &
	sp=$!
	wait $sp
	echo "watchdog: test still running after $TEST_LIMIT s, server killed" >"$WORK/watchdog"
	[ -s "$WORK/srv.pid" ] && kill -KILL "$(cat "$WORK/srv.pid")" 2>/dev/null
	exit 0
}

skip() { echo "$*"; exit 77; }
fail() { echo "$*"; exit 1; }

# shellcheck disable=SC2054  # the commas belong to valgrind's option values
VG_OPTS=(--leak-check=full --errors-for-leak-kinds=definite,indirect
	 --error-exitcode=99 --log-file="$WORK/vg/vg.%p.log")

# The server command line: plain, or under valgrind; with the transport.
if [ $VALGRIND = 1 ]; then
	SRVCMD=(valgrind "${VG_OPTS[@]}" "$SRV")
else
	SRVCMD=("$SRV")
fi
[ $TRANSPORT = uring ] && SRVCMD+=(--transport uring)

show_vg_logs() {
	local f
	for f in "$WORK"/vg/vg.*.log; do
		[ -s "$f" ] && grep -q 'ERROR SUMMARY: [1-9]\|definitely lost: [1-9]\|indirectly lost: [1-9]' "$f" &&
			tail -n 40 "$f"
	done
	return 0
}

# start OPTS...: mounts SRC on MNT with the server, in the background.
start() {
	rm -f "$STATS"
	"${SRVCMD[@]}" --foreground "$@" "$SRC" "$MNT" 2>"$LOG" &
	SRV_PID=$!
	echo $SRV_PID >"$WORK/srv.pid"
	for _ in $(seq 1 600); do
		if mountpoint -q "$MNT"; then
			return 0
		fi
		if ! kill -0 "$SRV_PID" 2>/dev/null; then
			wait "$SRV_PID"
			echo "server exited with status $? before mounting:"
			cat "$LOG"
			SRV_PID=
			return 1
		fi
		sleep 0.1
	done
	echo "server did not mount within 60 s"
	return 1
}

# stop [SIGNAL]: stops the server, checks a clean exit and unmount.
stop() {
	local sig=${1:-TERM} rc pid=$SRV_PID
	SRV_PID=
	[ -n "$pid" ] || return 0
	rm -f "$WORK/srv.pid"
	kill -"$sig" "$pid"
	for _ in $(seq 1 600); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "server still running 60 s after SIG$sig, killing it"
		kill -KILL "$pid"
		wait "$pid"
		umount -l "$MNT" 2>/dev/null
		return 1
	fi
	wait "$pid"
	rc=$?
	if mountpoint -q "$MNT"; then
		echo "still mounted after SIG$sig"
		umount -l "$MNT"
		return 1
	fi
	if [ $rc != 0 ]; then
		echo "server exit status $rc after SIG$sig"
		tail -n 20 "$LOG"
		show_vg_logs
		return 1
	fi
	return 0
}

# snapshot: asks the running server (started with --stats $STATS) for
# its counters; then stat KEY reads one.
snapshot() {
	rm -f "$STATS"
	kill -USR1 "$SRV_PID"
	for _ in $(seq 1 200); do
		[ -s "$STATS" ] && return 0
		sleep 0.05
	done
	echo "no stats after SIGUSR1"
	return 1
}

stat_of() {
	sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$STATS"
}

# reset: SIGUSR2, then waits until a snapshot shows zeroed counters.
reset() {
	kill -USR2 "$SRV_PID"
	for _ in $(seq 1 100); do
		snapshot || return 1
		[ "$(stat_of read_requests)" = 0 ] &&
			[ "$(stat_of write_requests)" = 0 ] && return 0
		sleep 0.05
	done
	echo "counters not reset by SIGUSR2"
	return 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# The number of possible CPUs (the kernel's FUSE-over-io_uring queues).
possible_cpus() {
	local n=0 r a b
	IFS=, read -ra ranges </sys/devices/system/cpu/possible
	for r in "${ranges[@]}"; do
		a=${r%-*} b=${r#*-}
		n=$((n + b - a + 1))
	done
	echo $n
}

# A reference file of random data outside the mount.
REF=$WORK/ref.dat
head -c $((4 << 20)) /dev/urandom >"$REF"

# ---- option and startup errors ----------------------------------------

# bad_opt PATTERN ARGS...: the server must refuse ARGS with exit 1 or 2,
# one line on stderr matching PATTERN, and must not mount.
bad_opt() {
	local pat=$1 rc lines
	shift
	"${SRVCMD[@]}" "$@" 2>"$WORK/err" >/dev/null </dev/null
	rc=$?
	lines=$(wc -l <"$WORK/err")
	cat "$WORK/err"
	if mountpoint -q "$MNT"; then
		umount -l "$MNT"
		fail "mounted although the arguments are bad"
	elif [ $rc != 1 ] && [ $rc != 2 ]; then
		show_vg_logs
		fail "exit status $rc, expected 1 or 2"
	elif [ "$lines" != 1 ]; then
		fail "$lines lines on stderr, expected 1"
	elif ! grep -q -- "$pat" "$WORK/err"; then
		fail "stderr does not match '$pat'"
	fi
}

NOFILE=$WORK/not-there
PLAIN=$WORK/plain-file
: >"$PLAIN"
t "error: --threads abc"          bad_opt "invalid value 'abc' for --threads" --threads abc "$SRC" "$MNT"
t "error: --threads 0"            bad_opt "invalid value '0' for --threads" --threads 0 "$SRC" "$MNT"
t "error: --max-pages 0"          bad_opt "for --max-pages" --max-pages 0 "$SRC" "$MNT"
t "error: --max-pages 257"        bad_opt "for --max-pages: expected an integer from 1 to 256" --max-pages 257 "$SRC" "$MNT"
t "error: --max-background -1"    bad_opt "for --max-background" --max-background -1 "$SRC" "$MNT"
t "error: --max-background 65536" bad_opt "for --max-background" --max-background 65536 "$SRC" "$MNT"
t "error: --latency-us 10ms"      bad_opt "for --latency-us" --latency-us 10ms "$SRC" "$MNT"
t "error: --backend foo"          bad_opt "invalid value 'foo' for --backend" --backend foo "$SRC" "$MNT"
t "error: --transport foo"        bad_opt "invalid value 'foo' for --transport" --transport foo "$SRC" "$MNT"
t "error: --uring-depth 0"        bad_opt "for --uring-depth: expected an integer from 1 to 1024" --uring-depth 0 "$SRC" "$MNT"
t "error: unknown option"         bad_opt "unknown option '--bogus'" --bogus "$SRC" "$MNT"
t "error: option without value"   bad_opt "option '--threads' needs a value" "$SRC" "$MNT" --threads
t "error: no arguments"           bad_opt "missing SOURCE and MOUNTPOINT"
t "error: no MOUNTPOINT"          bad_opt "missing MOUNTPOINT" "$SRC"
t "error: extra argument"         bad_opt "unexpected argument" "$SRC" "$MNT" extra
t "error: missing SOURCE"         bad_opt "SOURCE '$NOFILE': No such file" "$NOFILE" "$MNT"
t "error: SOURCE not a directory" bad_opt "SOURCE '$PLAIN' is not a directory" "$PLAIN" "$MNT"
t "error: missing MOUNTPOINT"     bad_opt "MOUNTPOINT '$NOFILE': No such file" "$SRC" "$NOFILE"
t "error: MOUNTPOINT not a dir"   bad_opt "MOUNTPOINT '$PLAIN' is not a directory" "$SRC" "$PLAIN"
t "error: unknown -o option"      bad_opt "unknown option" -o no_such_mount_option "$SRC" "$MNT"

no_dev_fuse() {
	have unshare || skip "no unshare"
	unshare -m true 2>/dev/null || skip "cannot unshare the mount namespace"
	# a private mount namespace whose /dev has no fuse node
	PT_SRV="$SRV" PT_VG=$VALGRIND PT_VGLOG="$WORK/vg/vg.%p.log" \
	unshare -m bash -c '
		mount -t tmpfs pt-nodev /dev || exit 3
		if [ "$PT_VG" = 1 ]; then
			exec valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect \
				--error-exitcode=99 --log-file="$PT_VGLOG" "$PT_SRV" "$@"
		fi
		exec "$PT_SRV" "$@"' sh "$SRC" "$MNT" 2>"$WORK/err"
	local rc=$?
	cat "$WORK/err"
	[ $rc = 3 ] && skip "cannot mount over /dev in a namespace"
	[ $rc = 1 ] || fail "exit status $rc, expected 1"
	[ "$(wc -l <"$WORK/err")" = 1 ] || fail "expected one line on stderr"
	grep -q "cannot open /dev/fuse" "$WORK/err" || fail "wrong message"
}
t "error: no /dev/fuse" no_dev_fuse

# --transport uring where the kernel cannot: no CONFIG_FUSE_IO_URING (no
# parameter), or enable_uring off (switched off for the test); a server
# built with uapi headers older than 7.42 says that instead.
uring_unavailable() {
	local old=
	if [ -e "$URING_PARAM" ]; then
		old=$(cat "$URING_PARAM")
		echo N >"$URING_PARAM" 2>/dev/null || skip "cannot write $URING_PARAM"
		(bad_opt "FUSE-over-io_uring is off\|built without FUSE-over-io_uring" \
			--transport uring "$SRC" "$MNT")
		local rc=$?
		echo "$old" >"$URING_PARAM"
		return $rc
	else
		bad_opt "CONFIG_FUSE_IO_URING\|built without FUSE-over-io_uring" \
			--transport uring "$SRC" "$MNT"
	fi
}
t "error: --transport uring without the kernel's io_uring transport" uring_unavailable

help_version() {
	"${SRVCMD[@]}" --help | grep -q -- "--latency-us" || fail "--help lacks options"
	"${SRVCMD[@]}" --version | grep -q "libfuse" || fail "--version lacks libfuse"
}
t "--help and --version" help_version

# ---- data -------------------------------------------------------------

# Which way the requests came: ring_requests counts those taken from a
# FUSE-over-io_uring entry (all opcodes).
transport_used() {
	head -c $((1 << 20)) "$REF" >"$SRC/tu.dat" || return 1
	start --stats "$STATS" --direct-io || return 1
	reset || return 1
	dd if="$MNT/tu.dat" of="$WORK/tu.out" bs=128k iflag=direct status=none || return 1
	snapshot || return 1
	stop || return 1
	cmp -n $((1 << 20)) "$REF" "$WORK/tu.out" || fail "data differs"
	local ring rq
	ring=$(stat_of ring_requests) rq=$(stat_of read_requests)
	echo "observed: transport $TRANSPORT: $rq READ requests, $ring requests from ring entries"
	[ "$rq" -ge 8 ] || fail "$rq READ requests for 1 MiB in 128 KiB reads"
	if [ $TRANSPORT = uring ]; then
		[ "$ring" -ge "$rq" ] || fail "only $ring of the requests came over io_uring"
	else
		[ "$ring" = 0 ] || fail "$ring requests over io_uring with --transport dev"
	fi
}
t "requests come over the $TRANSPORT transport" transport_used

data_cmp() {
	start "$@" || return 1
	cp "$REF" "$MNT/written" || fail "cp into the mount failed"
	cmp "$REF" "$SRC/written" || fail "SOURCE differs from what was written"
	cp "$REF" "$SRC/direct-in-source" || return 1
	cmp "$REF" "$MNT/direct-in-source" || fail "mount differs from SOURCE"
	cmp "$SRC/written" "$MNT/written" || fail "mount and SOURCE differ"
	stop
}
t "write/read through the mount equals SOURCE" data_cmp
t "same with --direct-io" data_cmp --direct-io

dd_direct() {
	start "$@" || return 1
	dd if="$REF" of="$MNT/dd.dat" bs=64k oflag=direct status=none ||
		fail "dd oflag=direct failed"
	cmp "$REF" "$SRC/dd.dat" || fail "oflag=direct data differs in SOURCE"
	dd if="$MNT/dd.dat" of="$SCR/dd.back" bs=128k iflag=direct status=none ||
		fail "dd iflag=direct failed"
	cmp "$REF" "$SCR/dd.back" || fail "iflag=direct data differs"
	# odd request sizes and offsets
	dd if="$REF" of="$MNT/dd2.dat" bs=12288 count=50 oflag=direct status=none &&
	dd if="$MNT/dd2.dat" of="$SCR/dd2.back" bs=20480 iflag=direct status=none ||
		fail "odd-sized direct dd failed"
	cmp -n $((12288 * 50)) "$REF" "$SCR/dd2.back" || fail "odd-sized data differs"
	stop
}
t "dd iflag/oflag=direct" dd_direct
t "dd iflag/oflag=direct, --direct-io" dd_direct --direct-io
t "dd iflag/oflag=direct, --backend uring" dd_direct --backend uring
t "dd direct, --direct-io --clone-fd --latency-us 100 --max-pages 16" \
	dd_direct --direct-io --clone-fd --latency-us 100 --max-pages 16

# fio_verify ENGINE SERVER-OPTS...
fio_verify() {
	local engine=$1
	shift
	have fio || skip "no fio"
	fio --name=probe --filename="$SRC/probe" --size=64k --ioengine="$engine" \
		--rw=write --output=/dev/null >/dev/null 2>&1 ||
		skip "fio $engine does not work on this system"
	rm -f "$SRC/probe"
	start "$@" || return 1
	fio --name=verify --filename="$MNT/fio-$engine.dat" --size=4m \
		--ioengine="$engine" --direct=1 --iodepth=8 --rw=randwrite \
		--bsrange=4k-64k --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
		--numjobs=1 --output="$WORK/fio.out" >/dev/null 2>&1
	local rc=$?
	if [ $rc != 0 ] || grep -q "err= *[1-9]" "$WORK/fio.out"; then
		cat "$WORK/fio.out"
		fail "fio failed (status $rc)"
	fi
	stop
}
t "fio verify libaio"                       fio_verify libaio
t "fio verify libaio, --direct-io"          fio_verify libaio --direct-io
t "fio verify io_uring"                     fio_verify io_uring
t "fio verify io_uring, --direct-io"        fio_verify io_uring --direct-io
t "fio verify libaio, --backend uring --direct-io --latency-us 200" \
	fio_verify libaio --backend uring --direct-io --latency-us 200
t "fio verify io_uring, --clone-fd --threads 2 --parallel-direct-writes --direct-io" \
	fio_verify io_uring --clone-fd --threads 2 --parallel-direct-writes --direct-io

# ---- metadata ---------------------------------------------------------

meta_ops() {
	start || return 1
	cd "$MNT" || return 1
	echo data >f || fail "create"
	truncate -s 12345 f && [ "$(stat -c %s "$SRC/f")" = 12345 ] || fail "truncate grow"
	truncate -s 3 f && [ "$(cat "$SRC/f")" = dat ] || fail "truncate shrink"
	chmod 640 f && [ "$(stat -c %a "$SRC/f")" = 640 ] || fail "chmod"
	chown 1234:5678 f && [ "$(stat -c %u:%g "$SRC/f")" = 1234:5678 ] || fail "chown"
	touch -d '2001-02-03 04:05:06.5' f &&
		[ "$(stat -c %y "$SRC/f")" = "$(stat -c %y f)" ] &&
		[ "$(stat -c %Y "$SRC/f")" = "$(date -d '2001-02-03 04:05:06' +%s)" ] || fail "utimens"
	mv f g && [ -e "$SRC/g" ] && [ ! -e "$SRC/f" ] || fail "rename"
	echo other >h && mv h g && [ "$(cat "$SRC/g")" = other ] || fail "rename over a file"
	ln -s some/target sl && [ "$(readlink sl)" = some/target ] &&
		[ "$(readlink "$SRC/sl")" = some/target ] || fail "symlink/readlink"
	touch -h -d '2002-01-01' sl && [ "$(stat -c %Y "$SRC/sl")" = "$(date -d 2002-01-01 +%s)" ] ||
		fail "utimens on a symlink"
	ln g hl && [ "$(stat -c %h g)" = 2 ] && [ "$(stat -c %h "$SRC/g")" = 2 ] &&
		[ "$(stat -c %i hl)" = "$(stat -c %i g)" ] || fail "link"
	mkdir -p d1/d2/d3 && [ -d "$SRC/d1/d2/d3" ] || fail "mkdir"
	rmdir d1 2>/dev/null && fail "rmdir of a non-empty directory succeeded"
	rmdir d1/d2/d3 d1/d2 d1 && [ ! -e "$SRC/d1" ] || fail "rmdir"
	rm hl && [ ! -e "$SRC/hl" ] && [ "$(stat -c %h g)" = 1 ] || fail "unlink"
	fallocate -l 1M fa && [ "$(stat -c %s "$SRC/fa")" = 1048576 ] || fail "fallocate"
	fallocate -p -o 0 -l 64k fa && [ "$(stat -c %s fa)" = 1048576 ] || fail "fallocate punch hole"
	mkfifo fifo && [ -p "$SRC/fifo" ] || fail "mknod fifo"
	[ "$(stat -f -c %b .)" = "$(stat -f -c %b "$SRC")" ] || fail "statfs"
	cp "$REF" big && cp big big2 && cmp big2 "$REF" || fail "copy within the mount"
	cd / || return 1
	stop
}
t "truncate, chmod, chown, utimens, rename, symlink, link, mkdir/rmdir, unlink, fallocate, mknod, statfs" meta_ops

readdir_many() {
	start || return 1
	mkdir "$MNT/many" || return 1
	(cd "$MNT/many" && seq -f 'file-with-a-long-name-%04g' 1 1500 | xargs touch) ||
		fail "creating files failed"
	[ "$(ls "$MNT/many" | wc -l)" = 1500 ] || fail "ls shows $(ls "$MNT/many" | wc -l) entries"
	diff <(ls -a "$MNT/many") <(ls -a "$SRC/many") || fail "listing differs from SOURCE"
	rm -r "$MNT/many" || fail "rm -r"
	[ ! -e "$SRC/many" ] || fail "rm -r left entries"
	stop
}
t "readdir of 1500 entries, rm -r" readdir_many

# a tree with data, modes, times, symlinks and a hard link
make_tree() {
	local d=$1
	mkdir -p "$d/a/b/c" "$d/empty" &&
	head -c 100000 "$REF" >"$d/a/file1" &&
	head -c 3000000 "$REF" >"$d/a/b/file2" &&
	: >"$d/a/b/c/zero" &&
	echo script >"$d/run.sh" && chmod 755 "$d/run.sh" &&
	echo secret >"$d/a/private" && chmod 600 "$d/a/private" &&
	ln -s ../run.sh "$d/a/link" &&
	ln -s /does/not/exist "$d/dangling" &&
	ln "$d/a/file1" "$d/a/b/hard" &&
	touch -d '2010-10-10 10:10:10.123456789' "$d/a/file1" "$d/a/b" &&
	touch -h -d '2011-11-11' "$d/a/link"
}
# listing DIR [s]: type, mode, size (not of directories: it depends on
# the file system), links, mtime (in whole seconds with "s", as tar keeps
# it), symlink target and path of everything under DIR.
listing() {
	local t=%T@
	[ "${2:-}" = s ] && t=%Ts
	(cd "$1" && find . \( -type d -printf "%y %m - %n $t %l %p\n" \) -o \
		-printf "%y %m %s %n $t %l %p\n" | sort)
}

tar_cp() {
	make_tree "$SCR/tree" || return 1
	start "$@" || return 1
	cp -a "$SCR/tree" "$MNT/cp" || fail "cp -a into the mount failed"
	diff <(listing "$SCR/tree") <(listing "$MNT/cp") || fail "cp -a copy differs"
	diff <(listing "$SCR/tree") <(listing "$SRC/cp") || fail "SOURCE differs after cp -a"
	diff -r --no-dereference "$SCR/tree" "$MNT/cp" || fail "cp -a contents differ"
	tar -C "$SCR/tree" -cf "$SCR/tree.tar" . || return 1
	mkdir "$MNT/x" && tar -C "$MNT/x" -xpf "$SCR/tree.tar" || fail "tar x into the mount failed"
	diff <(listing "$SCR/tree" s) <(listing "$MNT/x" s) || fail "tar x copy differs"
	tar -C "$MNT/x" -cf "$SCR/back.tar" . || fail "tar c from the mount failed"
	mkdir "$SCR/back" && tar -C "$SCR/back" -xpf "$SCR/back.tar" || return 1
	diff <(listing "$SCR/tree" s) <(listing "$SCR/back" s) || fail "tar round trip differs"
	cp -a "$MNT/cp" "$SCR/cp-back" || fail "cp -a out of the mount failed"
	diff <(listing "$SCR/tree") <(listing "$SCR/cp-back") || fail "cp -a round trip differs"
	stop
}
t "cp -a and tar round trips" tar_cp
t "cp -a and tar round trips, --direct-io --backend uring" tar_cp --direct-io --backend uring

compile() {
	have cc || skip "no C compiler"
	start "$@" || return 1
	mkdir "$MNT/build" && cd "$MNT/build" || return 1
	printf '#include "msg.h"\nint answer(void) { return MSG; }\n' >lib.c
	printf '#define MSG 42\n' >msg.h
	printf '#include <stdio.h>\nint answer(void);\nint main(void) { printf("hello %%d\\n", answer()); return 0; }\n' >main.c
	cc -O1 -c lib.c -o lib.o && cc -O1 -c main.c -o main.o && cc -o hello lib.o main.o ||
		fail "compiling on the mount failed"
	[ "$(./hello)" = "hello 42" ] || fail "the binary built on the mount does not run"
	cd / || return 1
	stop
}
t "compile and run a C program on the mount" compile
t "compile and run a C program on the mount, --direct-io" compile --direct-io

# ---- statistics, latency, concurrency ---------------------------------

stats_signals() {
	start --stats "$STATS" || return 1
	cp "$REF" "$MNT/s.dat" && cat "$MNT/s.dat" >/dev/null || return 1
	snapshot || return 1
	cat "$STATS"
	[ "$(stat_of write_bytes)" = $((4 << 20)) ] || fail "write_bytes wrong"
	[ "$(stat_of write_requests)" -ge 1 ] || fail "write_requests wrong"
	for k in read_requests write_requests read_bytes write_bytes \
		 max_inflight_read max_inflight_write max_inflight ring_requests; do
		grep -q "\"$k\":[0-9]" "$STATS" || fail "key $k missing"
	done
	reset || return 1
	[ "$(stat_of max_inflight)" = 0 ] || fail "max_inflight not reset"
	dd if="$MNT/s.dat" of=/dev/null bs=64k iflag=direct status=none || return 1
	snapshot || return 1
	[ "$(stat_of read_bytes)" = $((4 << 20)) ] || fail "read_bytes after reset wrong"
	[ "$(stat_of write_requests)" = 0 ] || fail "writes counted after reset"
	stop || return 1
	[ -s "$STATS" ] && grep -q '"read_bytes":4194304' "$STATS" ||
		fail "no final stats written at unmount"
}
t "--stats FILE on SIGUSR1 and at unmount, SIGUSR2 resets" stats_signals

stats_stderr() {
	start || return 1
	ls "$MNT" >/dev/null
	kill -USR1 "$SRV_PID"
	sleep 0.5
	grep -q '"read_requests":' "$LOG" || fail "no stats on stderr after SIGUSR1"
	stop || return 1
	[ "$(grep -c '"max_inflight":' "$LOG")" -ge 2 ] || fail "no stats on stderr at unmount"
}
t "stats to stderr on SIGUSR1 and at unmount" stats_stderr

# inflight_read SERVER-OPTS... -- FIO-OPTS...: runs a direct random-read
# fio job on a prepared file and leaves the server's stats in $STATS.
inflight_read() {
	local sopts=() fopts=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do sopts+=("$1"); shift; done
	shift
	fopts=("$@")
	head -c $((4 << 20)) "$REF" >"$SRC/rd.dat" || return 1
	start --stats "$STATS" "${sopts[@]}" || return 1
	reset || return 1
	fio --name=rd --filename="$MNT/rd.dat" --size=4m --rw=randread --bs=4k \
		--direct=1 --output="$WORK/fio.out" "${fopts[@]}" >/dev/null 2>&1 ||
		{ cat "$WORK/fio.out"; fail "fio failed"; }
	snapshot || return 1
	stop
}

latency_overlap() {
	have fio || skip "no fio"
	inflight_read --latency-us 2000 --threads 4 "$@" -- \
		--ioengine=libaio --iodepth=8 --numjobs=2 --io_size=1m || return 1
	echo "observed: $(cat "$STATS")"
	[ "$(stat_of max_inflight_read)" -gt 1 ] ||
		fail "max_inflight_read $(stat_of max_inflight_read), expected > 1"
}
t "--latency-us: requests overlap (fio libaio iodepth 8, 2 jobs)" latency_overlap
t "--latency-us: requests overlap, --direct-io" latency_overlap --direct-io
t "--latency-us: requests overlap, --backend uring --clone-fd" latency_overlap --backend uring --clone-fd

reply_threads() {
	local n
	start --latency-us 1000 --threads 3 || return 1
	n=$(grep -c '^pt-reply$' /proc/"$SRV_PID"/task/*/comm | awk -F: '{ s += $NF } END { print s }')
	stop || return 1
	[ "$n" = 3 ] || fail "$n pt-reply threads with --threads 3, expected 3"
}
t "--latency-us: one reply thread per worker (replies overlap too)" reply_threads

latency_one_thread() {
	have fio || skip "no fio"
	inflight_read --latency-us 5000 --threads 1 "$@" -- \
		--ioengine=libaio --iodepth=8 --numjobs=2 --io_size=256k || return 1
	echo "observed: $(cat "$STATS")"
	[ "$(stat_of max_inflight_read)" -gt 1 ] ||
		fail "max_inflight_read $(stat_of max_inflight_read) with 1 thread: the delay holds the worker"
}
t "--latency-us does not hold the worker (--threads 1)" latency_one_thread
t "--latency-us does not hold the worker (--threads 1 --backend uring)" latency_one_thread --backend uring

# READ buffers stay in the heap between batches of concurrent READs
# (io_buffers_keep() in io.c says what glibc's defaults cost).  The second
# fio run of the same file must fault less than one page in 16 (the heap
# may still grow by a few buffers, 32 pages each, where the second run
# reaches a new peak: up to 10 seen).
read_buffers_reused() {
	local f0 f1 faults cpu pages=$(((64 << 20) / 4096))
	have fio || skip "no fio"
	have taskset || skip "no taskset"
	head -c $((64 << 20)) /dev/urandom >"$SRC/rd.dat" || return 1
	start --latency-us 2000 --threads 4 --max-pages 32 --max-background 32 "$@" || return 1
	# fio on one CPU: the io_uring transport has a ring queue a CPU whose
	# payload pages are faulted in at their first request (1000-1100
	# faults when a busy host moved fio to the other CPU between the runs)
	cpu=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*\([0-9]*\).*/\1/p' /proc/self/status)
	rd() {
		taskset -c "$cpu" fio --name=rd --filename="$MNT/rd.dat" --size=64m --rw=read --bs=128k \
			--direct=1 --ioengine=libaio --iodepth=16 --output="$WORK/fio.out" \
			>/dev/null 2>&1 || { cat "$WORK/fio.out"; fail "fio failed"; }
	}
	rd || return 1
	f0=$(awk '{ print $10 }' /proc/"$SRV_PID"/stat)
	rd || return 1
	f1=$(awk '{ print $10 }' /proc/"$SRV_PID"/stat)
	stop || return 1
	faults=$((f1 - f0))
	echo "observed: $faults minor faults of the server in a 64 MiB read, 128 KiB x 16 at once"
	[ "$faults" -lt $((pages / 16)) ] ||
		fail "$faults minor faults for $pages pages read: READ buffers are faulted in anew"
}
t "READ buffers are reused, not faulted in anew (fio libaio 128k x 16)" read_buffers_reused
t "READ buffers are reused, not faulted in anew, --direct-io" read_buffers_reused --direct-io

# max_background LIMIT le|gt N: async DIO READs are background requests,
# so conn->max_background bounds them (the kernel default is 12).  The
# 100 ms delay keeps the 32 reads queued while the server picks them up:
# on a debug kernel under TCG with CPU steal it read only 12 in 20 ms
# (and 11 in 2 ms before that), which is the default limit.
max_background() {
	local mb=$1 cmp=$2 n=$3 max
	have fio || skip "no fio"
	inflight_read --latency-us 100000 --max-background "$mb" -- \
		--ioengine=libaio --iodepth=16 --numjobs=2 --io_size=1m || return 1
	max=$(stat_of max_inflight_read)
	echo "observed: --max-background $mb, fio libaio 2 jobs iodepth 16: max_inflight_read $max"
	# the io_uring transport lets one background request per ring queue
	# (one per possible CPU) through whatever the count of the others
	# (fuse_uring_flush_bg()): up to n - 1 more
	[ $TRANSPORT = uring ] && [ "$cmp" = le ] && n=$((n + $(possible_cpus) - 1))
	case $cmp in
	le) [ "$max" -le "$n" ] || fail "max_inflight_read $max, expected <= $n" ;;
	gt) [ "$max" -gt "$n" ] || fail "max_inflight_read $max, expected > $n" ;;
	esac
}
t "--max-background 4 caps async requests in flight" max_background 4 le 4
t "--max-background 64 lets more than the default 12 through" max_background 64 gt 12

# Without --latency-us the sync backend holds a worker per request, so
# --threads bounds what is in flight.
threads_cap() {
	have fio || skip "no fio"
	inflight_read --threads 2 --max-background 64 -- \
		--ioengine=libaio --iodepth=16 --numjobs=2 --io_size=1m || return 1
	local max
	max=$(stat_of max_inflight_read)
	echo "observed: --threads 2 without latency: max_inflight_read $max"
	[ "$max" -le 2 ] || fail "max_inflight_read $max with 2 worker threads"
}
t "--threads 2 bounds requests in flight without --latency-us" threads_cap

mount_opts() {
	start -o ro -o allow_other || return 1
	grep " $MNT " /proc/mounts | grep -q "ro," || fail "mount is not read-only"
	grep " $MNT " /proc/mounts | grep -q "allow_other" || fail "no allow_other"
	grep " $MNT " /proc/mounts | grep -q "^$SRC $MNT fuse.passthrough " ||
		fail "fsname/subtype not set: $(grep " $MNT " /proc/mounts)"
	touch "$MNT/x" 2>/dev/null && fail "write to a read-only mount succeeded"
	stop
}
t "-o ro -o allow_other; fsname=SOURCE, type fuse.passthrough" mount_opts

latency_delays() {
	head -c 65536 "$REF" >"$SRC/lat.dat"
	start --latency-us 20000 --direct-io || return 1
	local t0 t1 ms
	t0=$(date +%s%N)
	dd if="$MNT/lat.dat" of=/dev/null bs=4k count=10 iflag=direct status=none || return 1
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	echo "observed: 10 sequential 4k reads with --latency-us 20000 took $ms ms"
	[ $ms -ge 200 ] || fail "expected at least 200 ms"
	stop
}
t "--latency-us delays each reply" latency_delays

# Sync O_DIRECT dd (no FOPEN_DIRECT_IO): with FUSE_ASYNC_DIO the kernel
# splits one large read into parallel requests; without it, they are serial.
async_dio() {
	local expect=$1
	shift
	head -c $((4 << 20)) "$REF" >"$SRC/ad.dat" || return 1
	start --stats "$STATS" --max-pages 8 --latency-us 1000 "$@" || return 1
	reset || return 1
	dd if="$MNT/ad.dat" of=/dev/null bs=1M iflag=direct status=none || return 1
	snapshot || return 1
	stop || return 1
	echo "observed: $* dd bs=1M iflag=direct: $(cat "$STATS")"
	local rq max
	rq=$(stat_of read_requests)
	max=$(stat_of max_inflight_read)
	[ "$(stat_of read_bytes)" = $((4 << 20)) ] || fail "read_bytes wrong"
	[ "$rq" -ge 128 ] || fail "$rq READ requests for 4 MiB, max-pages 8 allows at most 32 KiB each"
	case $expect in
	serial) [ "$max" = 1 ] || fail "max_inflight_read $max, expected 1" ;;
	parallel) [ "$max" -gt 1 ] || fail "max_inflight_read $max, expected > 1" ;;
	esac
}
t "--max-pages 8 bounds requests; FUSE_ASYNC_DIO parallelises a sync O_DIRECT read" async_dio parallel
t "--no-async-dio: the same read is serial" async_dio serial --no-async-dio
t "--direct-io sync dd bs=1M iflag=direct (max in flight recorded only)" async_dio any --direct-io
t "--direct-io --no-async-dio-all: sync dd stays serial (no opt-in)" async_dio serial --direct-io --no-async-dio-all

parallel_writes() {
	local expect=$1
	shift
	have fio || skip "no fio"
	head -c $((4 << 20)) "$REF" >"$SRC/pw.dat" || return 1
	start --stats "$STATS" --direct-io --latency-us 2000 "$@" || return 1
	reset || return 1
	fio --name=pw --filename="$MNT/pw.dat" --size=4m --io_size=256k \
		--rw=randwrite --bs=4k --direct=1 --ioengine=psync --numjobs=4 \
		--output="$WORK/fio.out" >/dev/null 2>&1 ||
		{ cat "$WORK/fio.out"; fail "fio failed"; }
	snapshot || return 1
	stop || return 1
	echo "observed: $* fio psync 4 jobs randwrite: $(cat "$STATS")"
	local max
	max=$(stat_of max_inflight_write)
	case $expect in
	serial) [ "$max" = 1 ] || fail "max_inflight_write $max, expected 1" ;;
	parallel) [ "$max" -gt 1 ] || fail "max_inflight_write $max, expected > 1" ;;
	esac
}
t "--direct-io: sync direct writes to one file are serialised" parallel_writes serial
t "--parallel-direct-writes: they run in parallel" parallel_writes parallel --parallel-direct-writes

# ---- shutdown ---------------------------------------------------------

sig_stop() {
	start --stats "$STATS" || return 1
	ls "$MNT" >/dev/null
	stop "$1" || return 1
	[ -s "$STATS" ] || fail "no stats at unmount"
}
t "SIGTERM unmounts cleanly" sig_stop TERM
t "SIGINT unmounts cleanly" sig_stop INT

busy_stop() {
	head -c $((4 << 20)) "$REF" >"$SRC/busy.dat" || return 1
	start --latency-us 200000 --direct-io --backend "$1" || return 1
	dd if="$MNT/busy.dat" of=/dev/null bs=64k iflag=direct status=none 2>/dev/null &
	local dd=$!
	sleep 0.5
	stop TERM || return 1
	wait $dd
	return 0
}
t "SIGTERM with requests in flight (sync backend)" busy_stop sync
t "SIGTERM with requests in flight (uring backend)" busy_stop uring

debug_mode() {
	start --debug || return 1
	ls "$MNT" >/dev/null
	stop || return 1
	grep -q "INIT" "$LOG" || fail "no libfuse debug output"
}
t "--debug" debug_mode

daemon_mode() {
	local pid
	have pgrep || skip "no pgrep"
	(cd "$SCR" && "${SRVCMD[@]}" --stats rel-stats.json "$SRC" "$MNT") 2>"$LOG" ||
		fail "daemonizing start failed"
	mountpoint -q "$MNT" || fail "not mounted after the daemon started"
	echo x >"$MNT/daemon" && [ "$(cat "$SRC/daemon")" = x ] || fail "daemon does not serve"
	pid=$(pgrep -n -f -- "$MNT")
	[ -n "$pid" ] || fail "cannot find the daemon"
	umount "$MNT" || fail "umount failed"
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && fail "daemon still running after umount"
	grep -q '"write_bytes":2' "$SCR/rel-stats.json" ||
		fail "relative --stats path not written to the start directory"
}
t "daemon mode (no --foreground), stopped by umount, relative --stats" daemon_mode

# ---- valgrind summary -------------------------------------------------

if [ $VALGRIND = 1 ]; then
	vg_clean() {
		local bad=0 f
		for f in "$WORK"/vg/vg.*.log; do
			[ -e "$f" ] || continue
			if grep -q 'ERROR SUMMARY: [1-9]\|definitely lost: [1-9]\|indirectly lost: [1-9]' "$f"; then
				bad=1
				tail -n 30 "$f"
			fi
		done
		echo "observed: $(ls "$WORK"/vg | wc -l) valgrind runs"
		return $bad
	}
	t "valgrind: no errors or leaks in any server run" vg_clean
fi

echo "$PASS passed, $FAIL failed, $SKIP skipped"
[ $FAIL = 0 ]
