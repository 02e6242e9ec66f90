#!/bin/bash
# test.sh - functional tests for bench/aio-stress/aio-stress.
#
# Runs in a fresh temporary directory (under $TMPDIR, default /tmp; set
# AIO_STRESS_TESTDIR to use another filesystem).  O_DIRECT cases run only
# when the filesystem accepts O_DIRECT, otherwise they are reported as
# skipped.  Ends with "N passed, N failed" (", N skipped" when the O_DIRECT
# cases or the misaligned one could not run); exit status 1 on any failure.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/aio-stress
make -s -C "$HERE" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

BASE=${AIO_STRESS_TESTDIR:-${TMPDIR:-/tmp}}
DIR=$(mktemp -d "$BASE/aio-stress-test.XXXXXX") || exit 1
trap 'rm -rf "$DIR"' EXIT

PASS=0
FAIL=0
SKIP=0
OUT=$DIR/out	# stdout of the last run
ERR=$DIR/err	# stderr of the last run
RC=0

pass() { PASS=$((PASS + 1)); echo "ok   $1"; }
fail() {
	FAIL=$((FAIL + 1)); echo "FAIL $1${2:+: $2}"
	sed 's/^/     | /' "$ERR" | head -20
}

run() { "$BIN" "$@" >"$OUT" 2>"$ERR"; RC=$?; }

# expect_ok NAME ARGS...: exit status 0
expect_ok() {
	local name=$1; shift
	run "$@"
	if [ "$RC" -eq 0 ]; then pass "$name"; else fail "$name" "exit $RC"; fi
}

# expect_usage_error NAME REGEX ARGS...: non-zero exit, REGEX on stderr
expect_usage_error() {
	local name=$1 re=$2; shift 2
	run "$@"
	if [ "$RC" -eq 0 ]; then
		fail "$name" "exit status 0"
	elif ! grep -Eq -- "$re" "$ERR"; then
		fail "$name" "stderr lacks /$re/"
	else
		pass "$name"
	fi
}

# has NAME FILE REGEX: FILE has a line matching REGEX
has() {
	if grep -Eq -- "$3" "$2"; then pass "$1"; else fail "$1" "no line /$3/"; fi
}
hasnt() {
	if grep -Eq -- "$3" "$2"; then fail "$1" "unexpected /$3/"; else pass "$1"; fi
}

size_of() { stat -c %s "$1"; }

corrupt() {	# corrupt FILE OFFSET BYTES
	printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

FSTYPE=$( (findmnt -no FSTYPE -T "$DIR" 2>/dev/null || stat -f -c %T "$DIR") | tail -n 1)
echo "testing $BIN in $DIR ($FSTYPE)"

if dd if=/dev/zero of="$DIR/odirect" bs=64k count=1 oflag=direct status=none 2>/dev/null; then
	DIRECT=1
else
	DIRECT=0
	echo "note: $FSTYPE refuses O_DIRECT, -O cases skipped"
fi
rm -f "$DIR/odirect"

F=$DIR/file

### bad options: clear message, non-zero exit
expect_usage_error "no file"            'no file given'                 -s 1
expect_usage_error "unknown option"     'unknown option -z'             -z "$F"
expect_usage_error "missing argument"   'option -s requires an argument' "$F" -s
expect_usage_error "bad size"           "invalid size 'abc' for -s"     -s abc "$F"
expect_usage_error "bad size suffix"    "invalid size '4q' for -r"      -r 4q "$F"
expect_usage_error "zero record size"   'record size .* must be'        -r 0 "$F"
expect_usage_error "alignment not 2^n"  'must be a power of two'        -a 3k "$F"
expect_usage_error "bad stage"          "invalid value '7' for -o"      -o 7 "$F"
expect_usage_error "zero depth"         "invalid value '0' for -d"      -d 0 "$F"
expect_usage_error "negative threads"   "invalid value '-1' for -t"     -t -1 "$F"
expect_usage_error "junk count"         "invalid value '8x' for -i"     -i 8x "$F"
expect_usage_error "bad -m"             "invalid value 'foo' for -m"    -m foo "$F"
expect_usage_error "contexts too many"  'too small for 3 contexts'      -s 4 -c 3 "$F"
expect_usage_error "file < record"      'too small'                     -s 16k -r 64 "$F"
expect_usage_error "open failure"       "open $DIR/nodir/f: No such file or directory" \
	-s 1 -o 0 "$DIR/nodir/f"
run -h
if [ "$RC" -eq 0 ] && grep -q '^usage: aio-stress' "$OUT"; then pass "-h prints usage, exit 0"
else fail "-h prints usage, exit 0" "exit $RC"; fi
[ ! -e "$F" ] && pass "no file created by bad options" || fail "no file created by bad options"

### write stage creates the right size
expect_ok "write 16MB" -s 16 -o 0 "$F"
[ "$(size_of "$F")" -eq $((16 << 20)) ] && pass "write 16MB: size" \
	|| fail "write 16MB: size" "size $(size_of "$F")"
rm -f "$F"
expect_ok "write 1MB in 48KB records" -s 1 -r 48 -o 0 "$F"
[ "$(size_of "$F")" -eq $((1048576 / 49152 * 49152)) ] && pass "48KB records: whole records only" \
	|| fail "48KB records: whole records only" "size $(size_of "$F")"
rm -f "$F"
expect_ok "write with suffixes" -s 3m -r 8k -a 512b -o 0 "$F"
[ "$(size_of "$F")" -eq $((3 << 20)) ] && pass "suffixes: size" || fail "suffixes: size"
rm -f "$F"

### output formats
NUM='[0-9]+\.[0-9]{2}'
STAGE='(write|read|random write|random read)'
CTX_RE="^$STAGE on [^ ]+ \($NUM MB/s\) $NUM MB in ${NUM}s\$"
TOT_RE="^thread [0-9]+ $STAGE totals \($NUM MB/s\) $NUM MB in ${NUM}s\$"
expect_ok "all stages (default)" -s 4 "$F"
has  "format: header 1" "$ERR" '^file size 4MB, record size 64KB, depth 64, ios per iteration 8$'
has  "format: header 2" "$ERR" '^max io_submit 8, buffer alignment set to [0-9]+KB$'
has  "format: header 3" "$ERR" '^threads 1 files 1 contexts 1 context offset 2MB verification off$'
has  "format: running line (stdout)" "$OUT" '^Running single thread version $'
has  "format: write on FILE" "$ERR" "^write on $F \($NUM MB/s\) 4\.00 MB in ${NUM}s\$"
has  "format: read on FILE" "$ERR" "^read on $F \($NUM MB/s\) 4\.00 MB in ${NUM}s\$"
has  "format: thread 0 read totals" "$ERR" "^thread 0 read totals \($NUM MB/s\) 4\.00 MB in ${NUM}s\$"
ORDER=$(grep -E "$TOT_RE" "$ERR" | sed -E 's/^thread 0 (.*) totals.*/\1/' | paste -sd,)
[ "$ORDER" = "write,read,random write,random read" ] && pass "default stages in order" \
	|| fail "default stages in order" "got '$ORDER'"
BAD=$(grep -Ev "$CTX_RE|$TOT_RE|^file size|^max io_submit|^threads " "$ERR")
[ -z "$BAD" ] && pass "format: no unexpected stderr lines" || fail "format: no unexpected stderr lines" "$BAD"

expect_ok "-o given out of order" -s 2 -o 1 -o 0 -n "$F"
has "-o: adding stage line" "$ERR" '^adding stage read$'
has "-o: starting with write" "$ERR" '^starting with write$'
ORDER=$(grep -E "$TOT_RE" "$ERR" | sed -E 's/^thread 0 (.*) totals.*/\1/' | paste -sd,)
[ "$ORDER" = "write,read" ] && pass "-o 1 -o 0 runs write then read" || fail "-o 1 -o 0 runs write then read" "got '$ORDER'"

expect_ok "-b 1 drops io_iter" -s 2 -b 1 -o 1 "$F"
has "-b 1: dropping io_iter note" "$ERR" '^dropping io_iter to 1$'
has "-b 1: max io_submit 1" "$ERR" '^max io_submit 1, '
rm -f "$F"

### contexts: context j covers [j*C, size - j*C)
expect_ok "-c 3 contexts" -s 16 -c 3 -C 2 -o 0 -o 1 "$F"
[ "$(size_of "$F")" -eq $((16 << 20)) ] && pass "-c 3: size" || fail "-c 3: size"
CTX_MB=$(grep -E "^write on " "$ERR" | sed -E 's/.*\) ([0-9.]+) MB in.*/\1/' | sort -n | paste -sd,)
[ "$CTX_MB" = "8.00,12.00,16.00" ] && pass "-c 3: regions 16/12/8 MB" || fail "-c 3: regions 16/12/8 MB" "got $CTX_MB"
has "-c 3: thread totals 36MB" "$ERR" "^thread 0 write totals \($NUM MB/s\) 36\.00 MB in"
rm -f "$F"

### threads
G=$DIR/file2
expect_ok "-t 2 with 2 files" -s 4 -t 2 "$F" "$G"
has "-t 2: running line" "$OUT" '^Running multi thread version num_threads:2$'
has "-t 2: global throughput" "$ERR" "^write throughput \($NUM MB/s\) $NUM MB in ${NUM}s min transfer ${NUM}MB\$"
# stonewalling may cut a slow thread's write stage short, so verify with -x
rm -f "$F" "$G"
expect_ok "-t 2 -x -v" -s 4 -t 2 -x -v "$F" "$G"
has "-t 2: thread 0 totals" "$ERR" "^thread 0 write totals \($NUM MB/s\) 4\.00 MB"
has "-t 2: thread 1 totals" "$ERR" "^thread 1 write totals \($NUM MB/s\) 4\.00 MB"
hasnt "-t 2 -x -v: no verify errors" "$ERR" 'verify error'
expect_ok "-t 3 on 2 files is dropped" -s 4 -t 3 -o 1 "$F" "$G"
has "-t 3: dropping note" "$ERR" '^dropping thread count to the number of contexts 2$'
expect_ok "-x no stonewall" -s 4 -t 2 -x -o 1 "$F" "$G"
has "-x: no min transfer" "$ERR" "^read throughput \($NUM MB/s\) $NUM MB in ${NUM}s\$"
rm -f "$F" "$G"

### verification
expect_ok "-v write+read" -s 8 -v -o 0 -o 1 "$F"
hasnt "-v clean file: no verify error" "$ERR" 'verify error'
corrupt "$F" $((3 * 1048576 + 100)) X
run -s 8 -v -o 1 "$F"
[ "$RC" -ne 0 ] && pass "-v corrupted byte: non-zero exit" || fail "-v corrupted byte: non-zero exit"
has "-v corrupted byte: reported at its record" "$ERR" "^verify error, file $F offset 3145728 contents"
has "-v corrupted byte: byte 100 of the record" "$ERR" '^100:58:62 \(1 of 65536 bytes differ\)$'
run -s 8 -o 1 "$F"
[ "$RC" -eq 0 ] && pass "no -v: corruption not checked" || fail "no -v: corruption not checked"
expect_ok "-v rewrite repairs" -s 8 -v -o 0 -o 1 "$F"
run -s 16 -v -o 1 "$F"
[ "$RC" -ne 0 ] && pass "-v read past end of file fails" || fail "-v read past end of file fails"
has "-v past EOF: reported" "$ERR" 'end of file at 8388608, record missing'
run -s 16 -o 1 "$F"
[ "$RC" -eq 0 ] && pass "read past EOF without -v: only a note" || fail "read past EOF without -v: only a note"
has "read past EOF: note" "$ERR" "^read on $F \(context 0\): end of file at 8388608"
expect_ok "-v random stages" -s 8 -v -o 2 -o 3 "$F"
hasnt "-v random stages: no verify error" "$ERR" 'verify error'
rm -f "$F"
expect_ok "-m shm -v" -s 4 -v -m shm "$F"
expect_ok "-m shmfs -v" -s 4 -v -m shmfs -S "$F"
rm -f "$F"

### -I, -u
expect_ok "-I 10 -b 1" -s 8 -b 1 -I 10 -o 0 -o 1 "$F"
[ "$(size_of "$F")" -eq $((10 * 65536)) ] && pass "-I 10 -b 1: ten records written" \
	|| fail "-I 10 -b 1: ten records written" "size $(size_of "$F")"
hasnt "-I: no stage after the limited one" "$ERR" '^read on '
rm -f "$F"
expect_ok "-u unlinks" -s 1 -u "$F"
has "-u: cleaning line" "$OUT" "^Cleaning up file $F \$"
[ ! -e "$F" ] && pass "-u: file gone" || fail "-u: file gone"

### io errors: /dev/full has no aio support, io_submit fails
run -s 1 -o 0 /dev/full
[ "$RC" -ne 0 ] && pass "io error: non-zero exit" || fail "io error: non-zero exit"
has "io error: names file, offset, errno" "$ERR" \
	'^aio-stress: write on /dev/full \(context 0\) at offset 0, 65536 bytes: io_submit: '
has "io error: error count" "$ERR" '^aio-stress: [0-9]+ errors$'

### O_DIRECT
if [ "$DIRECT" = 1 ]; then
	expect_ok "-O write 512MB-style run" -s 32 -a 4 -b 1 -c 1 -O -o 0 -v "$F"
	[ "$(size_of "$F")" -eq $((32 << 20)) ] && pass "-O write: size" || fail "-O write: size"
	expect_ok "-O read -v" -s 32 -a 4 -b 1 -c 1 -O -o 1 -v "$F"
	corrupt "$F" $((20 * 1048576 + 65535)) Q
	run -s 32 -O -o 1 -v "$F"
	[ "$RC" -ne 0 ] && pass "-O -v detects corruption" || fail "-O -v detects corruption"
	has "-O -v: record reported" "$ERR" "^verify error, file $F offset $((20 * 1048576)) contents"
	rm -f "$F"
	# tmpfs, for one, accepts misaligned O_DIRECT
	if ! dd if=/dev/zero of="$DIR/odirect" bs=1 count=1 oflag=direct status=none 2>/dev/null; then
		run -s 1 -r 1b -O -o 0 "$F"
		[ "$RC" -ne 0 ] && pass "-O misaligned io: non-zero exit" || fail "-O misaligned io: non-zero exit"
		has "-O misaligned io: error names file, offset, errno" "$ERR" \
			"^aio-stress: write on $F \(context 0\) at offset 0, 1 bytes: Invalid argument\$"
		rm -f "$F"
	else
		echo "skip: $FSTYPE accepts misaligned O_DIRECT, no misaligned-io case"
		SKIP=$((SKIP + 1))
	fi
	rm -f "$DIR/odirect"
else
	echo "skip O_DIRECT cases"
	SKIP=$((SKIP + 1))
fi

if [ "$SKIP" -gt 0 ]; then
	echo "$PASS passed, $FAIL failed, $SKIP skipped"
else
	echo "$PASS passed, $FAIL failed"
fi
[ "$FAIL" -eq 0 ]
