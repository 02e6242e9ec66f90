#!/bin/bash
# test.sh - host-noise: it samples every probe it is given, logs every
# window, and refuses bad input with a message and exit status 2.
set -uo pipefail
cd "$(dirname "$0")"
pass=0 fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$(./host-noise --seconds 2 --window 20 --log "$tmp/log" alu chase:4 2>&1)
rc=$?
[ $rc = 0 ] && ok "runs (exit 0)" || bad "exit $rc: $out"
for p in alu chase:4; do
	n=$(awk -v p="$p" '$1 == p { print $2 }' <<<"$out")
	if [ "${n:-0}" -ge 2 ]; then ok "$p: $n windows in the summary"; else bad "$p: '${n:-none}' windows: $out"; fi
	l=$(awk -v p="$p" '$2 == p' "$tmp/log" | wc -l)
	[ "$l" = "$n" ] && ok "$p: every window logged" || bad "$p: $l logged, $n summarised"
done
# the log's time is the wall clock (the bench's runs carry time.time())
t=$(awk 'NR == 1 { printf "%d", $1 }' "$tmp/log")
now=$(date +%s)
[ $((now - t)) -ge 0 ] && [ $((now - t)) -le 10 ] && ok "log time is wall time" || bad "log time $t, now $now"

for args in "--seconds 0" "--seconds x" "--window" "chase:0" "chase:8x" "mem" "--bogus"; do
	# shellcheck disable=SC2086
	msg=$(./host-noise $args 2>&1 >/dev/null)
	rc=$?
	[ $rc = 2 ] && [ -n "$msg" ] && ok "refuses '$args': $msg" || bad "'$args': exit $rc, '$msg'"
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
