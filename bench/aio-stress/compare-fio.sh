#!/bin/bash
# compare-fio.sh - does our aio-stress measure the same MB/s as fio?
#
# Runs the 2012 reference commands
#     aio-stress -s 512 -a 4 -b 1 -c 1 -O -o 0 FILE     (sequential write)
#     aio-stress -s 512 -a 4 -b 1 -c 1 -O -o 1 FILE     (sequential read)
# and the equivalent fio job on the same file, interleaved (the order
# rotates every run), RUNS times each, and prints the medians, their
# ratios aio-stress / fio and the median of the per-run ratios (which is
# less sensitive to slow drifts of the device).
#
# Equivalent fio job: ioengine=libaio direct=1 bs=64k iodepth=64
# iodepth_batch_submit=1 size=512M rw=read|write numjobs=1 iomem_align=4k
# fallocate=none, in two variants that differ in how completions are
# reaped:
#   fio/1   iodepth_batch_complete_min=1, max left at fio's default (= min):
#           one completion per io_getevents, the queue stays full;
#   fio/64  iodepth_batch_complete_max=64: take every completion that is
#           ready, which is what aio-stress does (it asks io_getevents
#           for at least 1 and up to all of its io units), so the queue
#           drains in bursts;
#   fio/64g the same with gtod_reduce=1: no clock reads and latency
#           statistics per IO, so that fio's own bookkeeping is out of the
#           way where the tools' CPU time is the limit (raw tmpfs).
# aio-stress -b 1 submits one iocb per io_submit and keeps -d 64 in flight.
#
# aio-stress's figure is its "read|write on FILE" line: first submit to
# last completion, no fsync, like fio's bw.  The thread totals (which
# include the fsync after the stage) are shown as well.  MB = MiB.
#
# usage: compare-fio.sh [-n runs] [-s size_mb] [-d dir] [read|write ...]
#   dir defaults to $AIO_STRESS_BENCHDIR, else $TMPDIR, else /tmp.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/aio-stress
RUNS=5
SIZE=512
DIR=${AIO_STRESS_BENCHDIR:-${TMPDIR:-/tmp}}

while getopts "n:s:d:h" opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	d) DIR=$OPTARG ;;
	*) sed -n '2,/^set -eu/p' "$0" | sed 's/^# \{0,1\}//; /^set -eu/d'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
STAGES=${*:-write read}

command -v fio >/dev/null || { echo "fio not found" >&2; exit 1; }
make -s -C "$HERE" >/dev/null

FILE=$(mktemp "$DIR/aio-stress-fio.XXXXXX")
trap 'rm -f "$FILE"' EXIT

median() { sort -g | awk '{ v[NR] = $1 } END {
	if (NR == 0) { print "nan"; exit }
	if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# aio_run STAGE -> "file_mb_s totals_mb_s"
aio_run() {
	local op=0 log
	[ "$1" = read ] && op=1
	log=$("$BIN" -s "$SIZE" -a 4 -b 1 -c 1 -O -o "$op" "$FILE" 2>&1 >/dev/null) || {
		echo "aio-stress failed:" >&2; echo "$log" >&2; exit 1; }
	echo "$log" | awk -v s="$1" -v f="$FILE" '
		$1 == s && $2 == "on" && $3 == f { gsub(/\(/, "", $4); file = $4 }
		$1 == "thread" && $3 == s && $4 == "totals" { gsub(/\(/, "", $5); tot = $5 }
		END { print file, tot }'
}

# fio_run STAGE COMPLETE_MAX [FIO-OPTION...] -> MiB/s
fio_run() {
	local field=7 out
	[ "$1" = write ] && field=48
	out=$(fio "${@:3}" --name=aio-stress-equiv --filename="$FILE" --ioengine=libaio \
		--direct=1 --bs=64k --iodepth=64 --iodepth_batch_submit=1 \
		--iodepth_batch_complete_min=1 --iodepth_batch_complete_max="$2" \
		--size="${SIZE}M" --rw="$1" --numjobs=1 --iomem_align=4k \
		--fallocate=none --output-format=terse --terse-version=3) || {
		echo "fio failed" >&2; exit 1; }
	echo "$out" | awk -F';' -v f="$field" '{ printf "%.2f\n", $f / 1024 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

FS=$(findmnt -no FSTYPE,SOURCE -T "$DIR" 2>/dev/null | head -1 | tr -s " ")
[ -n "$FS" ] || FS=$(stat -f -c %T "$DIR")
echo "file $FILE on $FS, ${SIZE}MB, $RUNS runs each, kernel $(uname -r), $(fio --version)"

# lay the file out once so that every run, ours and fio's, overwrites
"$BIN" -s "$SIZE" -b 1 -O -o 0 "$FILE" 2>/dev/null >/dev/null

for stage in $STAGES; do
	A_FILE=() A_TOT=() F1=() F64=() FG=() R1=() R64=() RG=()
	for i in $(seq 1 "$RUNS"); do
		# rotate the order of the four, one step per run
		for k in 0 1 2 3; do
			case $(( (i + k) % 4 )) in
			1) read -r a t < <(aio_run "$stage") ;;
			2) f1=$(fio_run "$stage" 1) ;;
			3) f64=$(fio_run "$stage" 64) ;;
			0) fg=$(fio_run "$stage" 64 --gtod_reduce=1) ;;
			esac
		done
		A_FILE+=("$a") A_TOT+=("$t") F1+=("$f1") F64+=("$f64") FG+=("$fg")
		R1+=("$(ratio "$a" "$f1")") R64+=("$(ratio "$a" "$f64")") RG+=("$(ratio "$a" "$fg")")
		printf '%-5s run %2d: aio-stress %8s MB/s (totals %8s)  fio/1 %8s  fio/64 %8s  fio/64g %8s MB/s\n' \
			"$stage" "$i" "$a" "$t" "$f1" "$f64" "$fg"
	done
	ma=$(printf '%s\n' "${A_FILE[@]}" | median)
	mt=$(printf '%s\n' "${A_TOT[@]}" | median)
	m1=$(printf '%s\n' "${F1[@]}" | median)
	m64=$(printf '%s\n' "${F64[@]}" | median)
	mg=$(printf '%s\n' "${FG[@]}" | median)
	printf '%-5s median: aio-stress %.2f MB/s (totals %.2f)  fio/1 %.2f  fio/64 %.2f  fio/64g %.2f MB/s\n' \
		"$stage" "$ma" "$mt" "$m1" "$m64" "$mg"
	printf '%-5s ratio of medians:      aio-stress/fio1 %s  aio-stress/fio64 %s  aio-stress/fio64g %s\n' \
		"$stage" "$(ratio "$ma" "$m1")" "$(ratio "$ma" "$m64")" "$(ratio "$ma" "$mg")"
	printf '%-5s median of run ratios:  aio-stress/fio1 %s  aio-stress/fio64 %s  aio-stress/fio64g %s\n' \
		"$stage" "$(printf '%s\n' "${R1[@]}" | median)" \
		"$(printf '%s\n' "${R64[@]}" | median)" "$(printf '%s\n' "${RG[@]}" | median)"
done
