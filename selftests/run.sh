#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the fuse-adio selftests and summarise them.
#
#   selftests/run.sh [TEST...]
#
# TEST: names of test binaries (e.g. dio_roundtrip); default: every *.c here
# that uses kselftest_harness.h.  Binaries are taken from $SELFTESTS_OUTPUT,
# default this script's directory (where "make -C selftests" puts them).
# Each binary prints TAP; its output is shown as it runs.  The last line is
#   N passed, N failed[, N skipped]
# counting harness test cases ("ok N ...", "not ok N ...", "ok N ... # SKIP").
# Exit status is non-zero if a case failed, or a binary is missing, crashed,
# exited non-zero without a failing case, or reported fewer cases than its
# plan said.  $SELFTESTS_TIMEOUT (seconds, default 900) bounds each binary,
# on top of the harness' per-case timeouts.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || exit 2
bindir=${SELFTESTS_OUTPUT:-$here}
limit=${SELFTESTS_TIMEOUT:-900}

if [ $# -gt 0 ]; then
	tests=("$@")
else
	tests=()
	for src in "$here"/*.c; do
		grep -q '#include "kselftest_harness.h"' "$src" &&
			tests+=("$(basename "$src" .c)")
	done
fi

passed=0 failed=0 skipped=0
log=$(mktemp "${TMPDIR:-/tmp}/selftests.XXXXXX") || exit 2
trap 'rm -f "$log"' EXIT

for t in "${tests[@]}"; do
	t=$(basename "$t" .c)
	bin=$bindir/$t
	echo "# ===== $t"
	if [ ! -x "$bin" ]; then
		echo "# $t: $bin not built"
		failed=$((failed + 1))
		continue
	fi
	start=$SECONDS
	if command -v timeout >/dev/null; then
		(cd "$bindir" && timeout -k 10 "$limit" "$bin") 2>&1 | tee "$log"
	else
		(cd "$bindir" && "$bin") 2>&1 | tee "$log"
	fi
	rc=${PIPESTATUS[0]}
	echo "# ===== $t: $((SECONDS - start)) s"

	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
	p=$(grep -E '^ok [0-9]+ ' "$log" | grep -vcE '# SKIP')
	s=$(grep -cE '^ok [0-9]+ .*# SKIP' "$log")
	f=$(grep -cE '^not ok [0-9]+ ' "$log")
	passed=$((passed + p)) skipped=$((skipped + s)) failed=$((failed + f))

	if [ -n "$plan" ] && [ $((p + s + f)) -lt "$plan" ]; then
		echo "# $t: only $((p + s + f)) of $plan cases reported (exit status $rc)"
		failed=$((failed + plan - p - s - f))
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		# 4 (KSFT_SKIP) is how a harness binary with only skips may end
		if [ "$rc" -eq 4 ] && [ "$s" -gt 0 ] && [ "$p" -eq 0 ]; then
			:
		else
			echo "# $t: exit status $rc without a failing case"
			failed=$((failed + 1))
		fi
	fi
done

summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
