#!/bin/bash
# test.sh - host-noise: it samples every probe it is given (or the default
# ones), logs every window, summarises what it logged, keeps its duty
# cycle, and refuses bad input with a message and exit status 2.
set -uo pipefail
cd "$(dirname "$0")"
make -s || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
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
	# the summary's median is the nearest-rank median of the logged windows
	want=$(awk -v p="$p" '$2 == p { print $3 }' "$tmp/log" | sort -g |
		awk '{ v[NR - 1] = $1 } END { printf "%.2f", v[int((NR - 1) * 0.5 + 0.5)] }')
	got=$(awk -v p="$p" '$1 == p { for (i = 1; i < NF; i++) if ($i == "median") print $(i + 1) }' <<<"$out")
	[ -n "$got" ] && [ "$got" = "$want" ] && ok "$p: median $got ms is the log's" ||
		bad "$p: summary median '$got', the log's $want"
done
# the log's time is the wall clock (the bench's runs carry time.time())
t=$(awk 'NR == 1 { printf "%d", $1 }' "$tmp/log")
now=$(date +%s)
[ $((now - t)) -ge 0 ] && [ $((now - t)) -le 10 ] && ok "log time is wall time" || bad "log time $t, now $now"

# with no probe named: alu, chase:8, chase:256
out=$(./host-noise --seconds 1 --window 10 2>&1)
names=$(awk '{ print $1 }' <<<"$out" | tr '\n' ' ')
[ "$names" = "alu chase:8 chase:256 " ] && ok "default probes: $names" || bad "default probes: '$names' ($out)"

# --duty 10: the windows take about a tenth of the time, not all of it
./host-noise --seconds 2 --window 20 --duty 10 --log "$tmp/duty" alu >/dev/null 2>&1
busy=$(awk '{ s += $3 } END { printf "%d", s }' "$tmp/duty")
[ "${busy:-0}" -gt 0 ] && [ "$busy" -lt 800 ] && ok "--duty 10: $busy ms of windows in 2 s" ||
	bad "--duty 10: ${busy:-no} ms of windows in 2 s"

for args in "--seconds 0" "--seconds x" "--seconds nan" "--window nan" "--duty nan" \
	    "--duty 0" "--window" "--log" "chase:0" "chase:" "chase:8x" "mem" "--bogus"; do
	# shellcheck disable=SC2086
	msg=$(timeout 10 ./host-noise $args 2>&1 >/dev/null)
	rc=$?
	[ $rc = 2 ] && [ -n "$msg" ] && ok "refuses '$args': ${msg%%$'\n'*}" || bad "'$args': exit $rc, '$msg'"
done
msg=$(./host-noise --seconds 0.1 --log /nonexistent/dir/log alu 2>&1)
rc=$?
[ $rc = 1 ] && [[ "$msg" == *"/nonexistent/dir/log"* ]] && ok "unwritable log: $msg" || bad "unwritable log: exit $rc, '$msg'"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
